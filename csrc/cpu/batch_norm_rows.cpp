// Batch norm on the CPU, rows layout: x is (M, C) (channels last, or (N, C)), channel
// c is column c. Work items are blocks of rows (and, for wide C, tiles of columns);
// vectors run along the columns. Per-item sums merge in block order, so the bits do not
// depend on the thread count or the instruction set. Compiled once per instruction set.
#include <stdint.h>
#include <string.h>

#include "cpu/batch_norm_lanes.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {


// Narrow C (< kWideChannels): a block of rows is walked as flat segments of
// `width` = lcm(C, 16) values, so vectors stay full for any C; slot q of a segment
// belongs to channel q % C. Wide C: segments are rows cut into tiles of
// kColumnTile columns.
constexpr int64_t kWideChannels = 64;
constexpr int64_t kColumnTile = 256;
constexpr int64_t kBlockValues = 32768;
constexpr int64_t kMaxWidth = kColumnTile > 16 * kWideChannels ? kColumnTile : 16 * kWideChannels;

inline int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    const int64_t r = a % b;
    a = b;
    b = r;
  }
  return a;
}

struct Rows {
  int64_t M, C;
  bool narrow;
  int64_t width;  // slots per segment
  int64_t lanes;  // length of per-slot parameter arrays: width (narrow) or C (wide)
  int64_t tiles, R, blocks;

  explicit Rows(const BnShape& s) : M(s.outer), C(s.channels), narrow(s.channels < kWideChannels) {
    int64_t row_multiple = 1;
    if (narrow) {
      width = C * (kLanes / gcd64(C, kLanes));
      lanes = width;
      tiles = 1;
      row_multiple = width / C;  // blocks start at slot 0
    } else {
      width = kColumnTile;
      lanes = C;
      tiles = (C + kColumnTile - 1) / kColumnTile;
    }
    const int64_t tile_columns = min64(C, kColumnTile);
    R = kBlockValues / tile_columns;
    R = ((R + row_multiple - 1) / row_multiple) * row_multiple;
    if (R < 1) R = 1;
    blocks = (M + R - 1) / R;
  }
  int64_t items() const { return blocks * tiles; }
  int64_t block(int64_t item) const { return item / tiles; }
  int64_t rows_in(int64_t item) const { return min64(R, M - block(item) * R); }
  int64_t first_channel(int64_t item) const { return narrow ? 0 : (item % tiles) * kColumnTile; }
  // Channels an item covers: all C (narrow) or its tile.
  int64_t channels_in(int64_t item) const {
    return narrow ? C : min64(kColumnTile, C - first_channel(item));
  }

  // f(offset, len, lane0): a segment of len values at flat index offset, whose slot q
  // uses parameter lane lane0 + q.
  template <class F> void for_each_segment(int64_t item, F f) const {
    const int64_t r0 = block(item) * R, rows = rows_in(item);
    if (narrow) {
      const int64_t begin = r0 * C, total = rows * C;
      for (int64_t o = 0; o < total; o += width) f(begin + o, min64(width, total - o), int64_t(0));
    } else {
      const int64_t c0 = first_channel(item), w = channels_in(item);
      for (int64_t r = r0; r < r0 + rows; ++r) f(r * C + c0, w, c0);
    }
  }
  // per_channel[i] (channel first_channel + i) = sum of the item's slots of that channel,
  // in slot order.
  void fold(int64_t item, const double* slots, double* per_channel) const {
    const int64_t n = channels_in(item);
    for (int64_t i = 0; i < n; ++i) per_channel[i] = slots[i];
    if (narrow)
      for (int64_t u = 1; u < width / C; ++u)
        for (int64_t i = 0; i < C; ++i) per_channel[i] += slots[u * C + i];
  }
  // Channel c's backward sums over all blocks, in block order.
  BackwardSums channel_total(const BackwardSums* part, int64_t c) const {
    BackwardSums total = {0, 0, 0};
    for (int64_t b = 0; b < blocks; ++b) add_sums(total, part[b * C + c]);
    return total;
  }
  // f(l, c) for each parameter lane l and its channel c = l % C (no division per lane).
  template <class F> void for_lanes(F f) const {
    for (int64_t l = 0, c = 0; l < lanes; ++l, c = c + 1 == C ? 0 : c + 1) f(l, c);
  }
  // Parameter lanes from a per-channel function.
  template <class V, class F> void fill_lanes(V* lane, F f) const {
    for_lanes([&](int64_t l, int64_t c) { lane[l] = f(c); });
  }
};

// For the slots q < len of one segment, 16 at a time: d = f(at), s1[q] += d and
// s2[q] += d * d; at(p) loads slot q of stream p widened to float64 (a Vec16<double>,
// or a double in the tail).
template <class F>
inline void accumulate_slots(double* s1, double* s2, int64_t len, F f) {
  int64_t q = 0;
  for (; q + kLanes <= len; q += kLanes) {
    const auto d = f([q](const auto* p) { return load16_f64(p + q); });
    store16(s1 + q, load16(s1 + q) + d);
    store16(s2 + q, load16(s2 + q) + d * d);
  }
  for (; q < len; ++q) {
    const double d = f([q](const auto* p) { return double(p[q]); });
    s1[q] += d;
    s2[q] += d * d;
  }
}

// y = bn_normalize(x) with per-channel params, spread into lanes of T so the vectors
// load them like data.
template <bool kRelu, class T>
void rows_normalize(const Rows& g, const BnForwardArgs<T>& a, const NormalizeParams<T>* params) {
  Scratch<T> hi(g.lanes), lo(g.lanes), scale(g.lanes), shift(g.lanes);
  g.for_lanes([&](int64_t l, int64_t c) {
    hi[l] = params[c].mean_hi;
    lo[l] = params[c].mean_lo;
    scale[l] = params[c].scale;
    shift[l] = params[c].shift;
  });
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T* xs = a.x + o;
      T* ys = a.y + o;
      const T *h = hi.data + l0, *lw = lo.data + l0, *s = scale.data + l0, *b = shift.data + l0;
      int64_t q = 0;
      for (; q + kLanes <= len; q += kLanes)
        store16(ys + q, activate<kRelu>(((load16(xs + q) - load16(h + q)) - load16(lw + q)) *
                                            load16(s + q) + load16(b + q)));
      for (; q < len; ++q) ys[q] = activate<kRelu>(((xs[q] - h[q]) - lw[q]) * s[q] + b[q]);
    });
  });
}

template <bool kRelu, class T>
void rows_forward_train(const BnForwardArgs<T>& a) {
  const Rows g(a.shape);
  const int64_t C = g.C;
  Scratch<double> shift(g.lanes);  // the first row
  g.fill_lanes(shift.data, [&](int64_t c) { return double(a.x[c]); });
  Scratch<ChunkStats> part(g.blocks * C);

  parallel_for(g.items(), a.threads, [&](int64_t item) {
    double acc1[kMaxWidth], acc2[kMaxWidth];
    memset(acc1, 0, sizeof(double) * g.width);
    memset(acc2, 0, sizeof(double) * g.width);
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T* xs = a.x + o;
      const double* k = shift.data + l0;
      accumulate_slots(acc1, acc2, len, [&](auto at) { return at(xs) - at(k); });
    });
    double s1[kMaxWidth], s2[kMaxWidth];
    g.fold(item, acc1, s1);
    g.fold(item, acc2, s2);
    const double rows = double(g.rows_in(item));
    ChunkStats* out = &part[g.block(item) * C + g.first_channel(item)];
    for (int64_t i = 0; i < g.channels_in(item); ++i) out[i] = chunk_from_shifted_sums(rows, s1[i], s2[i]);
  });

  // Every channel of a block has the same count: one weight per block.
  Scratch<ChunkStats> total(C);
  for (int64_t c = 0; c < C; ++c) total[c] = part[c];
  for (int64_t b = 1; b < g.blocks; ++b) {
    const double w = part[b * C].n / (total[0].n + part[b * C].n);
    for (int64_t c = 0; c < C; ++c) chan_merge_weighted(total[c], part[b * C + c], w);
  }
  Scratch<NormalizeParams<T>> params(C);
  for (int64_t c = 0; c < C; ++c) params[c] = finish_forward_channel(a, c, shift[c], total[c]);
  rows_normalize<kRelu>(g, a, params.data);
}

template <bool kRelu, class T>
void rows_forward_eval(const BnForwardArgs<T>& a) {
  const Rows g(a.shape);
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c)
    params[c] = normalize_params<T>(a.mean[c], a.invstd[c], weight_at(a.weight, c),
                                    bias_at(a.bias, c));
  rows_normalize<kRelu>(g, a, params.data);
}

// Per-item sums for the backward: sum(dy), sum(dy * (x - m0)) and, in training,
// sum(x - m0); in eval also writes dx = dy * k (k per lane).
template <class T, bool kEval, bool kRelu>
void rows_backward_sums(const Rows& g, const BnBackwardArgs<T>& a, const double* m0,
                        const T* k, BackwardSums* part) {
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    double s_dy[kMaxWidth], s_dyx[kMaxWidth], s_x[kMaxWidth];
    memset(s_dy, 0, sizeof(double) * g.width);
    memset(s_dyx, 0, sizeof(double) * g.width);
    memset(s_x, 0, sizeof(double) * g.width);
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T *dys = a.dy + o, *ys = mask_stream<kRelu>(a) + o, *xs = a.x + o;
      const double* m = m0 + l0;
      int64_t q = 0;
      for (; q + kLanes <= len; q += kLanes) {
        const Vec16<double> gv = grad16_f64<kRelu>(dys + q, ys + q);
        const Vec16<double> xc = load16_f64(xs + q) - load16(m + q);
        store16(s_dy + q, load16(s_dy + q) + gv);
        store16(s_dyx + q, load16(s_dyx + q) + gv * xc);
        if (kEval)
          store16(a.dx + o + q, grad16<kRelu>(dys + q, ys + q) * load16(k + l0 + q));
        else
          store16(s_x + q, load16(s_x + q) + xc);
      }
      for (; q < len; ++q) {
        const double gv = grad1<kRelu>(dys + q, ys + q), xc = double(xs[q]) - m[q];
        s_dy[q] += gv;
        s_dyx[q] += gv * xc;
        if (kEval)
          a.dx[o + q] = grad1<kRelu>(dys + q, ys + q) * k[l0 + q];
        else
          s_x[q] += xc;
      }
    });
    double f_dy[kMaxWidth], f_dyx[kMaxWidth], f_x[kMaxWidth];
    g.fold(item, s_dy, f_dy);
    g.fold(item, s_dyx, f_dyx);
    g.fold(item, s_x, f_x);
    BackwardSums* out = part + g.block(item) * g.C + g.first_channel(item);
    for (int64_t i = 0; i < g.channels_in(item); ++i) out[i] = {f_dy[i], f_dyx[i], f_x[i]};
  });
}

template <bool kRelu, class T>
void rows_backward_train(const BnBackwardArgs<T>& a) {
  const Rows g(a.shape);
  const int64_t C = g.C;
  Scratch<double> m0(g.lanes);
  g.fill_lanes(m0.data, [&](int64_t c) { return double(a.mean[c]); });
  Scratch<BackwardSums> part(g.blocks * C);
  rows_backward_sums<T, false, kRelu>(g, a, m0.data, nullptr, part.data);

  Scratch<BackwardParams<T>> params(C);
  for (int64_t c = 0; c < C; ++c)
    params[c] = finish_backward_channel(a, c, double(g.M), g.channel_total(part.data, c));
  Scratch<T> hi(g.lanes), lo(g.lanes), c_dy(g.lanes), c_xc(g.lanes), c_0(g.lanes);
  g.for_lanes([&](int64_t l, int64_t c) {
    hi[l] = params[c].mean_hi;
    lo[l] = params[c].mean_lo;
    c_dy[l] = params[c].c_dy;
    c_xc[l] = params[c].c_xc;
    c_0[l] = params[c].c_0;
  });
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T *dys = a.dy + o, *ys = mask_stream<kRelu>(a) + o, *xs = a.x + o;
      T* dxs = a.dx + o;
      const T *h = hi.data + l0, *lw = lo.data + l0, *k1 = c_dy.data + l0,
              *k2 = c_xc.data + l0, *k3 = c_0.data + l0;
      int64_t q = 0;
      for (; q + kLanes <= len; q += kLanes)
        store16(dxs + q, (load16(k1 + q) * grad16<kRelu>(dys + q, ys + q) +
                          load16(k2 + q) * ((load16(xs + q) - load16(h + q)) - load16(lw + q))) +
                             load16(k3 + q));
      for (; q < len; ++q) dxs[q] = (k1[q] * grad1<kRelu>(dys + q, ys + q) + k2[q] * ((xs[q] - h[q]) - lw[q])) + k3[q];
    });
  });
}

template <bool kRelu, class T>
void rows_backward_eval(const BnBackwardArgs<T>& a) {
  const Rows g(a.shape);
  const int64_t C = g.C;
  Scratch<double> m0(g.lanes);
  g.fill_lanes(m0.data, [&](int64_t c) { return double(a.mean[c]); });
  Scratch<T> k(g.lanes);
  g.fill_lanes(k.data, [&](int64_t c) { return T(weight_at(a.weight, c) * double(a.invstd[c])); });
  Scratch<BackwardSums> part(g.blocks * C);
  rows_backward_sums<T, true, kRelu>(g, a, m0.data, k.data, part.data);
  for (int64_t c = 0; c < C; ++c) store_eval_backward(a, c, g.channel_total(part.data, c));
}

}  // namespace

// ------------------------------------------------------------------ entry points

template <class T>
void rows_forward_train(const BnForwardArgs<T>& a) {
  a.relu ? rows_forward_train<true>(a) : rows_forward_train<false>(a);
}
template void rows_forward_train<float>(const BnForwardArgs<float>&);
template void rows_forward_train<double>(const BnForwardArgs<double>&);

template <class T>
void rows_forward_eval(const BnForwardArgs<T>& a) {
  a.relu ? rows_forward_eval<true>(a) : rows_forward_eval<false>(a);
}
template void rows_forward_eval<float>(const BnForwardArgs<float>&);
template void rows_forward_eval<double>(const BnForwardArgs<double>&);

template <class T>
void rows_backward_train(const BnBackwardArgs<T>& a) {
  a.y ? rows_backward_train<true>(a) : rows_backward_train<false>(a);
}
template void rows_backward_train<float>(const BnBackwardArgs<float>&);
template void rows_backward_train<double>(const BnBackwardArgs<double>&);

template <class T>
void rows_backward_eval(const BnBackwardArgs<T>& a) {
  a.y ? rows_backward_eval<true>(a) : rows_backward_eval<false>(a);
}
template void rows_backward_eval<float>(const BnBackwardArgs<float>&);
template void rows_backward_eval<double>(const BnBackwardArgs<double>&);

FASTNN_CPU_NAMESPACE_END

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

// Rows of a sums pass are walked U at a time (U = 4, and 1 for the rest): the U values
// of a slot are added pairwise, then to the slot's float64 sum, so each sum is loaded
// and stored once per U rows.
constexpr int kRowsAtOnce = 4;

// U segments with the same slots: the first at flat index o, the others stride values
// apart; their mask words (fused ReLU) start at bit `bit`, bit_stride bits apart.
struct Segments {
  int64_t o, len, l0, stride, count, bit, bit_stride;
};

struct Rows {
  int64_t M, C;
  bool narrow;
  int64_t width;  // slots per segment
  int64_t lanes;  // length of per-slot parameter arrays: width (narrow) or C (wide)
  int64_t tiles, R, blocks;
  int64_t row_words;  // wide: mask words per row (a tile's first slot starts a word)

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
    row_words = (C + kLanes - 1) / kLanes;
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
  // Words of the fused ReLU's mask: narrow segments start on a multiple of 16 values,
  // so bit = flat index; wide rows get row_words each.
  int64_t mask_words() const { return (narrow ? (M * C + kLanes - 1) / kLanes : M * row_words) + 1; }

  // f(segments): the item's segments as groups with the same slots, in order.
  template <class F> void for_each_segment_group(int64_t item, F f) const {
    const int64_t r0 = block(item) * R, rows = rows_in(item);
    if (narrow) {
      const int64_t begin = r0 * C, total = rows * C, full = total / width;
      if (full) f(Segments{begin, width, 0, width, full, begin, width});
      if (total % width)
        f(Segments{begin + full * width, total % width, 0, width, 1, begin + full * width, width});
    } else {
      const int64_t c0 = first_channel(item);
      f(Segments{r0 * C + c0, channels_in(item), c0, C, rows, (r0 * row_words) * kLanes + c0,
                 row_words * kLanes});
    }
  }
  // f(offset, len, lane0, bit): a segment of len values at flat index offset, whose slot
  // q uses parameter lane lane0 + q and mask bit bit + q.
  template <class F> void for_each_segment(int64_t item, F f) const {
    for_each_segment_group(item, [&](const Segments& s) {
      for (int64_t j = 0; j < s.count; ++j) f(s.o + j * s.stride, s.len, s.l0, s.bit + j * s.bit_stride);
    });
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

// v[0] + ... + v[U - 1], pairwise.
template <int U, class V>
inline V sum_rows(const V* v) {
  if (U == 1) return v[0];
  return (v[0] + v[1]) + (v[2] + v[3]);
}

// Slots q < len of U rows of x (stride apart): s1[q] += sum(d), s2[q] += sum(d * d) for
// d = x - shift, in float64.
template <int U, class T>
inline void stats_slots(const T* x, int64_t stride, int64_t len, const double* shift, double* s1,
                        double* s2) {
  int64_t q = 0;
  for (; q + kLanes <= len; q += kLanes) {
    const Vec16<double> k = load16(shift + q);
    Vec16<double> d[U], dd[U];
    for (int u = 0; u < U; ++u) {
      d[u] = load16_f64(x + u * stride + q) - k;
      dd[u] = d[u] * d[u];
    }
    store16(s1 + q, load16(s1 + q) + sum_rows<U>(d));
    store16(s2 + q, load16(s2 + q) + sum_rows<U>(dd));
  }
  for (; q < len; ++q) {
    double d[U], dd[U];
    for (int u = 0; u < U; ++u) {
      d[u] = double(x[u * stride + q]) - shift[q];
      dd[u] = d[u] * d[u];
    }
    s1[q] += sum_rows<U>(d);
    s2[q] += sum_rows<U>(dd);
  }
}

// U rows at a time, then one at a time.
template <class F>
inline void by_row_groups(const Segments& s, F f) {
  int64_t j = 0;
  for (; j + kRowsAtOnce <= s.count; j += kRowsAtOnce) f(Flag<true>{}, j);
  for (; j < s.count; ++j) f(Flag<false>{}, j);
}

// y = bn_normalize(x) with per-channel params, spread into lanes of T so the vectors
// load them like data.
template <bool kStream, bool kRelu, class T>
void rows_normalize(const Rows& g, const BnForwardArgs<T>& a, const NormalizeParams<T>* params) {
  Scratch<T> hi(g.lanes), lo(g.lanes), scale(g.lanes), shift(g.lanes);
  g.for_lanes([&](int64_t l, int64_t c) {
    hi[l] = params[c].mean_hi;
    lo[l] = params[c].mean_lo;
    scale[l] = params[c].scale;
    shift[l] = params[c].shift;
  });
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0, int64_t) {
      const T* xs = a.x + o;
      const T *h = hi.data + l0, *lw = lo.data + l0, *s = scale.data + l0, *b = shift.data + l0;
      write_run<kStream>(
          a.y + o, len,
          [&](int64_t q) {
            return activate<kRelu>(((load16(xs + q) - load16(h + q)) - load16(lw + q)) * load16(s + q) +
                                   load16(b + q));
          },
          [&](int64_t q) { return activate<kRelu>(((xs[q] - h[q]) - lw[q]) * s[q] + b[q]); });
    });
    if (kStream) stream_fence();
  });
}

template <bool kStream, bool kRelu, class T>
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
    g.for_each_segment_group(item, [&](const Segments& sg) {
      const double* k = shift.data + sg.l0;
      by_row_groups(sg, [&](auto four, int64_t j) {
        stats_slots<four.value ? kRowsAtOnce : 1>(a.x + sg.o + j * sg.stride, sg.stride, sg.len, k, acc1, acc2);
      });
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
  rows_normalize<kStream, kRelu>(g, a, params.data);
}

template <bool kStream, bool kRelu, class T>
void rows_forward_eval(const BnForwardArgs<T>& a) {
  const Rows g(a.shape);
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c)
    params[c] = normalize_params<T>(a.mean[c], a.invstd[c], weight_at(a.weight, c),
                                    bias_at(a.bias, c));
  rows_normalize<kStream, kRelu>(g, a, params.data);
}

// Backward sums of U rows (stride apart) over slots q < len: s_dy += sum(g),
// s_dyx += sum(g * (x - m0)) and in training s_x += sum(x - m0), g the gradient the
// batch norm sees. In eval also dx = g * k; in training with the ReLU, the mask words
// (row u's at mask + u * mask_stride).
template <int U, bool kEval, bool kRelu, class T>
inline void backward_slots(const T* dy, const T* y, const T* x, T* dx, int64_t stride, int64_t len,
                           const double* m0, const T* k, double* s_dy, double* s_dyx, double* s_x,
                           uint16_t* mask, int64_t mask_stride) {
  const bool write_mask = kRelu && !kEval;
  int64_t q = 0;
  for (; q + kLanes <= len; q += kLanes) {
    const Vec16<double> m = load16(m0 + q);
    Vec16<double> gv[U], gx[U], xc[U];
    for (int u = 0; u < U; ++u) {
      const int64_t o = u * stride + q;
      if (write_mask) mask[u * mask_stride + q / kLanes] = uint16_t(positive_bits16(load16(y + o)));
      gv[u] = grad16_f64<kRelu>(dy + o, y + o);
      xc[u] = load16_f64(x + o) - m;
      gx[u] = gv[u] * xc[u];
      if (kEval) store16(dx + o, grad16<kRelu>(dy + o, y + o) * load16(k + q));  // after the loads
    }
    store16(s_dy + q, load16(s_dy + q) + sum_rows<U>(gv));
    store16(s_dyx + q, load16(s_dyx + q) + sum_rows<U>(gx));
    if (!kEval) store16(s_x + q, load16(s_x + q) + sum_rows<U>(xc));
  }
  if (write_mask && q < len)
    for (int u = 0; u < U; ++u) mask[u * mask_stride + q / kLanes] = 0;
  for (; q < len; ++q) {
    double gv[U], gx[U], xc[U];
    for (int u = 0; u < U; ++u) {
      const int64_t o = u * stride + q;
      if (write_mask) mask[u * mask_stride + q / kLanes] |= uint16_t((y[o] > 0) << (q % kLanes));
      gv[u] = grad1<kRelu>(dy + o, y + o);
      xc[u] = double(x[o]) - m0[q];
      gx[u] = gv[u] * xc[u];
      if (kEval) dx[o] = grad1<kRelu>(dy + o, y + o) * k[q];
    }
    s_dy[q] += sum_rows<U>(gv);
    s_dyx[q] += sum_rows<U>(gx);
    if (!kEval) s_x[q] += sum_rows<U>(xc);
  }
}

// Per-item sums for the backward: sum(dy), sum(dy * (x - m0)) and, in training,
// sum(x - m0); in eval also writes dx = dy * k (k per lane).
template <bool kEval, bool kRelu, class T>
void rows_backward_sums(const Rows& g, const BnBackwardArgs<T>& a, const double* m0,
                        const T* k, BackwardSums* part, uint16_t* mask) {
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    double s_dy[kMaxWidth], s_dyx[kMaxWidth], s_x[kMaxWidth];
    memset(s_dy, 0, sizeof(double) * g.width);
    memset(s_dyx, 0, sizeof(double) * g.width);
    memset(s_x, 0, sizeof(double) * g.width);
    g.for_each_segment_group(item, [&](const Segments& sg) {
      by_row_groups(sg, [&](auto four, int64_t j) {
        const int64_t o = sg.o + j * sg.stride;
        uint16_t* words = kRelu && !kEval ? mask + (sg.bit + j * sg.bit_stride) / kLanes : nullptr;
        backward_slots<four.value ? kRowsAtOnce : 1, kEval, kRelu>(
            a.dy + o, mask_stream<kRelu>(a) + o, a.x + o, a.dx + o, sg.stride, sg.len, m0 + sg.l0,
            k ? k + sg.l0 : nullptr, s_dy, s_dyx, s_x, words, sg.bit_stride / kLanes);
      });
    });
    double f_dy[kMaxWidth], f_dyx[kMaxWidth], f_x[kMaxWidth];
    g.fold(item, s_dy, f_dy);
    g.fold(item, s_dyx, f_dyx);
    g.fold(item, s_x, f_x);
    BackwardSums* out = part + g.block(item) * g.C + g.first_channel(item);
    for (int64_t i = 0; i < g.channels_in(item); ++i) out[i] = {f_dy[i], f_dyx[i], f_x[i]};
  });
}

// Training backward: the sums, then dx. With the ReLU, the sums pass keeps the mask as
// bits, so the dx pass reads dy and x (and the bits), not y.
template <bool kStream, bool kRelu, class T>
void rows_backward_train(const BnBackwardArgs<T>& a) {
  const Rows g(a.shape);
  const int64_t C = g.C;
  Scratch<double> m0(g.lanes);
  g.fill_lanes(m0.data, [&](int64_t c) { return double(a.mean[c]); });
  Scratch<BackwardSums> part(g.blocks * C);
  Scratch<uint16_t> mask(kRelu ? g.mask_words() : 0);
  if (kRelu) mask[g.mask_words() - 1] = 0;  // the padding word bits_at may read
  rows_backward_sums<false, kRelu>(g, a, m0.data, static_cast<const T*>(nullptr), part.data, mask.data);

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
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0, int64_t bit) {
      const T *dys = a.dy + o, *xs = a.x + o;
      const T *h = hi.data + l0, *lw = lo.data + l0, *k1 = c_dy.data + l0,
              *k2 = c_xc.data + l0, *k3 = c_0.data + l0;
      write_run<kStream>(  // dx may be dy, x or y: each value is read before it is written
          a.dx + o, len,
          [&](int64_t q) {
            Vec16<T> d = load16(dys + q);
            if (kRelu) d = keep_bits16(bits_at(mask.data, bit + q), d);
            return (load16(k1 + q) * d + load16(k2 + q) * ((load16(xs + q) - load16(h + q)) - load16(lw + q))) +
                   load16(k3 + q);
          },
          [&](int64_t q) {
            const T d = kRelu && !(bits_at(mask.data, bit + q) & 1) ? T(0) : dys[q];
            return (k1[q] * d + k2[q] * ((xs[q] - h[q]) - lw[q])) + k3[q];
          });
    });
    if (kStream) stream_fence();
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
  rows_backward_sums<true, kRelu>(g, a, m0.data, k.data, part.data, nullptr);
  for (int64_t c = 0; c < C; ++c) store_eval_backward(a, c, g.channel_total(part.data, c));
}

// The output passes stream past the cache when the arrays a pass touches don't fit in it.
template <class T>
inline bool stream_output(const Rows& g, int64_t arrays) {
  return streaming_pays(arrays * g.M * g.C * int64_t(sizeof(T)));
}

}  // namespace

// ------------------------------------------------------------------ entry points

template <class T>
void rows_forward_train(const BnForwardArgs<T>& a) {
  with_variant(stream_output<T>(Rows(a.shape), 2), a.relu, [&](auto stream, auto relu) {
    rows_forward_train<stream.value, relu.value>(a);
  });
}
template void rows_forward_train<float>(const BnForwardArgs<float>&);
template void rows_forward_train<double>(const BnForwardArgs<double>&);

template <class T>
void rows_forward_eval(const BnForwardArgs<T>& a) {
  with_variant(stream_output<T>(Rows(a.shape), 2), a.relu, [&](auto stream, auto relu) {
    rows_forward_eval<stream.value, relu.value>(a);
  });
}
template void rows_forward_eval<float>(const BnForwardArgs<float>&);
template void rows_forward_eval<double>(const BnForwardArgs<double>&);

template <class T>
void rows_backward_train(const BnBackwardArgs<T>& a) {
  with_variant(stream_output<T>(Rows(a.shape), a.y ? 4 : 3), a.y != nullptr, [&](auto stream, auto relu) {
    rows_backward_train<stream.value, relu.value>(a);
  });
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

// Batch norm forward and backward on the CPU, compiled once per instruction set
// (CMakeLists.txt). The formulas live in fastnn/bn_math.h.
//
// Two layouts of x, both C-contiguous (cpu::BnShape):
//  planes (N, C, S), S > 1: channel c is N planes of S contiguous values. Statistics
//         are taken per piece (at most kPiece values of one plane) and merged per
//         channel in (n, piece) order.
//  rows   (M, C): channel c is column c. Work items are blocks of rows (and, for wide
//         C, tiles of columns); vectors run along the columns.
// Every reduction is split into pieces fixed by the shape and merged in a fixed order,
// so the bits do not depend on the thread count or the instruction set.
#include <stdint.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/bn_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
template <class T> inline double weight_at(const T* w, int64_t c) { return w ? double(w[c]) : 1.0; }
template <class T> inline double bias_at(const T* b, int64_t c) { return b ? double(b[c]) : 0.0; }

// A task takes whole channels (two passes over a channel back to back, the second
// from cache) when a channel's streams fit in this many bytes.
constexpr int64_t kChannelInCacheBytes = int64_t(8) << 20;

// ------------------------------------------------------------------ planes layout

constexpr int64_t kPiece = 4096;

struct Planes {
  int64_t N, C, S, J;  // J pieces per plane
  explicit Planes(const BnShape& s)
      : N(s.outer), C(s.channels), S(s.inner), J((s.inner + kPiece - 1) / kPiece) {}
  int64_t pieces() const { return N * C * J; }
  // Piece t = (n * C + c) * J + j, so consecutive tasks walk memory in order.
  int64_t piece(int64_t n, int64_t c, int64_t j) const { return (n * C + c) * J + j; }
  int64_t begin(int64_t t) const { return (t / J) * S + (t % J) * kPiece; }
  int64_t length(int64_t t) const { return min64(kPiece, S - (t % J) * kPiece); }
  int64_t channel(int64_t t) const { return (t / J) % C; }
  double count() const { return double(N) * double(S); }
  // Whole channels per task if that keeps both threads busy and a channel in cache.
  bool whole_channels(int threads, int64_t channel_bytes) const {
    const bool balanced = threads <= 1 || C % threads == 0 || C >= 8 * threads;
    return balanced && channel_bytes <= kChannelInCacheBytes;
  }
  template <class F> void for_pieces_of_channel(int64_t c, F f) const {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < J; ++j) f(piece(n, c, j));
  }
  // The same pieces last to first: a second pass over a channel starts with what the
  // first pass left in cache most recently.
  template <class F> void for_pieces_of_channel_reversed(int64_t c, F f) const {
    for (int64_t n = N - 1; n >= 0; --n)
      for (int64_t j = J - 1; j >= 0; --j) f(piece(n, c, j));
  }
};

// One pass over one piece: its shifted sums, in float64.
template <class T>
ChunkStats piece_stats(const T* p, int64_t len, double shift) {
  Vec16<double> s1 = zeros16<double>(), s2 = s1;
  auto add = [&](const Vec16<double>& d) {
    s1 += d;
    s2 += d * d;
  };
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) add(load16_f64(p + i) - shift);
  if (i < len) add(first_lanes(load_tail16_f64(p + i, len - i) - shift, len - i));
  return chunk_from_shifted_sums(double(len), reduce_lanes(s1), reduce_lanes(s2));
}

// sum(dy), sum(dy * (x - m0)), sum(x - m0) over one piece; with kWriteDx also
// dx = dy * k in the same pass (the eval backward).
template <bool kWriteDx, class T>
BackwardSums piece_backward_sums(const T* dy, const T* x, int64_t len, double m0,
                                 T* dx = nullptr, T k = T(0)) {
  Vec16<double> s_dy = zeros16<double>(), s_dyx = s_dy, s_x = s_dy;
  auto add = [&](const Vec16<double>& g, const Vec16<double>& xc) {
    s_dy += g;
    s_dyx += g * xc;
    s_x += xc;
  };
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    add(load16_f64(dy + i), load16_f64(x + i) - m0);
    if (kWriteDx) store16(dx + i, load16(dy + i) * k);
  }
  if (i < len) {  // padding lanes: dy = 0 and x - m0 = 0
    add(load_tail16_f64(dy + i, len - i), first_lanes(load_tail16_f64(x + i, len - i) - m0, len - i));
    if (kWriteDx)
      for (; i < len; ++i) dx[i] = dy[i] * k;
  }
  return {reduce_lanes(s_dy), reduce_lanes(s_dyx), reduce_lanes(s_x)};
}

inline void add_sums(BackwardSums& a, const BackwardSums& b) {
  a.sum_dy += b.sum_dy;
  a.sum_dy_xc += b.sum_dy_xc;
  a.sum_xc += b.sum_xc;
}

template <class T>
NormalizeParams<T> finish_forward_channel(const BnForwardArgs<T>& a, int64_t c, double shift,
                                          const ChunkStats& st) {
  const double mean = shift + st.shifted_mean;
  const double var = st.m2 / st.n;
  a.mean[c] = mean;
  a.var[c] = var;
  return normalize_params<T>(mean, bn_invstd(var, a.eps), weight_at(a.weight, c),
                             bias_at(a.bias, c));
}

template <class T>
void planes_forward_train(const BnForwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<double> shift(g.C);  // each channel's first value
  for (int64_t c = 0; c < g.C; ++c) shift[c] = double(a.x[c * g.S]);
  auto stats = [&](int64_t t) {
    return piece_stats(a.x + g.begin(t), g.length(t), shift[g.channel(t)]);
  };
  auto normalize = [&](int64_t t, const NormalizeParams<T>& p) {
    const int64_t o = g.begin(t);
    map16(a.x + o, a.y + o, g.length(t), [&p](auto v) { return bn_normalize(v, p); });
  };

  if (g.whole_channels(a.threads, g.N * g.S * int64_t(sizeof(T)))) {
    parallel_for(g.C, a.threads, [&](int64_t c) {
      ChunkStats total = {0, 0, 0};
      g.for_pieces_of_channel(c, [&](int64_t t) { chan_merge(total, stats(t)); });
      const NormalizeParams<T> p = finish_forward_channel(a, c, shift[c], total);
      g.for_pieces_of_channel_reversed(c, [&](int64_t t) { normalize(t, p); });
    });
    return;
  }
  Scratch<ChunkStats> part(g.pieces());
  parallel_for(g.pieces(), a.threads, [&](int64_t t) { part[t] = stats(t); });
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c) {
    ChunkStats total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { chan_merge(total, part[t]); });
    params[c] = finish_forward_channel(a, c, shift[c], total);
  }
  parallel_for(g.pieces(), a.threads, [&](int64_t t) { normalize(t, params[g.channel(t)]); });
}

template <class T>
void planes_forward_eval(const BnForwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c)
    params[c] = normalize_params<T>(a.mean[c], a.invstd[c], weight_at(a.weight, c),
                                    bias_at(a.bias, c));
  parallel_for(g.pieces(), a.threads, [&](int64_t t) {
    const int64_t o = g.begin(t);
    const NormalizeParams<T> p = params[g.channel(t)];
    map16(a.x + o, a.y + o, g.length(t), [&p](auto v) { return bn_normalize(v, p); });
  });
}

template <class T>
BackwardParams<T> finish_backward_channel(const BnBackwardArgs<T>& a, int64_t c, double count,
                                          const BackwardSums& s) {
  return backward_train_params<T>(s, count, double(a.mean[c]), double(a.invstd[c]),
                                  weight_at(a.weight, c), &a.dweight[c], &a.dbias[c]);
}

template <class T>
void planes_backward_train(const BnBackwardArgs<T>& a) {
  const Planes g(a.shape);
  auto sums = [&](int64_t t) {
    const int64_t o = g.begin(t);
    return piece_backward_sums<false>(a.dy + o, a.x + o, g.length(t), double(a.mean[g.channel(t)]));
  };
  auto write_dx = [&](int64_t t, const BackwardParams<T>& p) {
    const int64_t o = g.begin(t);
    map16(a.dy + o, a.x + o, a.dx + o, g.length(t),
          [&p](auto dy, auto x) { return bn_backward_dx(dy, x, p); });
  };

  if (g.whole_channels(a.threads, 2 * g.N * g.S * int64_t(sizeof(T)))) {
    parallel_for(g.C, a.threads, [&](int64_t c) {
      BackwardSums total = {0, 0, 0};
      g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, sums(t)); });
      const BackwardParams<T> p = finish_backward_channel(a, c, g.count(), total);
      g.for_pieces_of_channel_reversed(c, [&](int64_t t) { write_dx(t, p); });
    });
    return;
  }
  Scratch<BackwardSums> part(g.pieces());
  parallel_for(g.pieces(), a.threads, [&](int64_t t) { part[t] = sums(t); });
  Scratch<BackwardParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c) {
    BackwardSums total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, part[t]); });
    params[c] = finish_backward_channel(a, c, g.count(), total);
  }
  parallel_for(g.pieces(), a.threads, [&](int64_t t) { write_dx(t, params[g.channel(t)]); });
}

// Eval backward in one pass: dx = dy * weight * invstd while summing dy and dy * (x - mean).
template <class T>
void planes_backward_eval(const BnBackwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<BackwardSums> part(g.pieces());
  parallel_for(g.pieces(), a.threads, [&](int64_t t) {
    const int64_t o = g.begin(t), c = g.channel(t);
    const T k = T(weight_at(a.weight, c) * double(a.invstd[c]));
    const double m0 = double(a.mean[c]);
    part[t] = piece_backward_sums<true>(a.dy + o, a.x + o, g.length(t), m0, a.dx + o, k);
  });
  for (int64_t c = 0; c < g.C; ++c) {
    BackwardSums total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, part[t]); });
    a.dbias[c] = total.sum_dy;
    a.dweight[c] = total.sum_dy_xc * double(a.invstd[c]);
  }
}

// -------------------------------------------------------------------- rows layout

// Narrow C (< kWideChannels): a block of rows is walked as flat segments of
// `width` = lcm(C, 16) values, so vectors stay full for any C; slot q of a segment
// belongs to channel q % C. Wide C: segments are rows cut into tiles of
// kWideChannels columns.
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
  // Parameter lanes from a per-channel function: lane l is channel l % C.
  template <class V, class F> void fill_lanes(V* lane, F f) const {
    for (int64_t l = 0; l < lanes; ++l) lane[l] = f(l % C);
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
template <class T>
void rows_normalize(const Rows& g, const BnForwardArgs<T>& a, const NormalizeParams<T>* params) {
  Scratch<T> hi(g.lanes), lo(g.lanes), scale(g.lanes), shift(g.lanes);
  for (int64_t l = 0; l < g.lanes; ++l) {
    const NormalizeParams<T>& p = params[l % g.C];
    hi[l] = p.mean_hi;
    lo[l] = p.mean_lo;
    scale[l] = p.scale;
    shift[l] = p.shift;
  }
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T* xs = a.x + o;
      T* ys = a.y + o;
      const T *h = hi.data + l0, *lw = lo.data + l0, *s = scale.data + l0, *b = shift.data + l0;
      int64_t q = 0;
      for (; q + kLanes <= len; q += kLanes)
        store16(ys + q, ((load16(xs + q) - load16(h + q)) - load16(lw + q)) * load16(s + q) +
                            load16(b + q));
      for (; q < len; ++q) ys[q] = ((xs[q] - h[q]) - lw[q]) * s[q] + b[q];
    });
  });
}

template <class T>
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

  Scratch<ChunkStats> total(C);
  for (int64_t c = 0; c < C; ++c) total[c] = {0, 0, 0};
  for (int64_t b = 0; b < g.blocks; ++b)
    for (int64_t c = 0; c < C; ++c) chan_merge(total[c], part[b * C + c]);
  Scratch<NormalizeParams<T>> params(C);
  for (int64_t c = 0; c < C; ++c) params[c] = finish_forward_channel(a, c, shift[c], total[c]);
  rows_normalize(g, a, params.data);
}

template <class T>
void rows_forward_eval(const BnForwardArgs<T>& a) {
  const Rows g(a.shape);
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c)
    params[c] = normalize_params<T>(a.mean[c], a.invstd[c], weight_at(a.weight, c),
                                    bias_at(a.bias, c));
  rows_normalize(g, a, params.data);
}

// Per-item sums for the backward: sum(dy), sum(dy * (x - m0)) and, in training,
// sum(x - m0); in eval also writes dx = dy * k (k per lane).
template <class T, bool kEval>
void rows_backward_sums(const Rows& g, const BnBackwardArgs<T>& a, const double* m0,
                        const T* k, BackwardSums* part) {
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    double s_dy[kMaxWidth], s_dyx[kMaxWidth], s_x[kMaxWidth];
    memset(s_dy, 0, sizeof(double) * g.width);
    memset(s_dyx, 0, sizeof(double) * g.width);
    memset(s_x, 0, sizeof(double) * g.width);
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T *dys = a.dy + o, *xs = a.x + o;
      const double* m = m0 + l0;
      int64_t q = 0;
      for (; q + kLanes <= len; q += kLanes) {
        const Vec16<double> gv = load16_f64(dys + q);
        const Vec16<double> xc = load16_f64(xs + q) - load16(m + q);
        store16(s_dy + q, load16(s_dy + q) + gv);
        store16(s_dyx + q, load16(s_dyx + q) + gv * xc);
        if (kEval)
          store16(a.dx + o + q, load16(dys + q) * load16(k + l0 + q));
        else
          store16(s_x + q, load16(s_x + q) + xc);
      }
      for (; q < len; ++q) {
        const double gv = dys[q], xc = double(xs[q]) - m[q];
        s_dy[q] += gv;
        s_dyx[q] += gv * xc;
        if (kEval)
          a.dx[o + q] = dys[q] * k[l0 + q];
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

template <class T>
void rows_backward_train(const BnBackwardArgs<T>& a) {
  const Rows g(a.shape);
  const int64_t C = g.C;
  Scratch<double> m0(g.lanes);
  g.fill_lanes(m0.data, [&](int64_t c) { return double(a.mean[c]); });
  Scratch<BackwardSums> part(g.blocks * C);
  rows_backward_sums<T, false>(g, a, m0.data, nullptr, part.data);

  Scratch<BackwardParams<T>> params(C);
  for (int64_t c = 0; c < C; ++c) {
    BackwardSums total = {0, 0, 0};
    for (int64_t b = 0; b < g.blocks; ++b) add_sums(total, part[b * C + c]);
    params[c] = finish_backward_channel(a, c, double(g.M), total);
  }
  Scratch<T> hi(g.lanes), lo(g.lanes), c_dy(g.lanes), c_xc(g.lanes), c_0(g.lanes);
  for (int64_t l = 0; l < g.lanes; ++l) {
    const BackwardParams<T>& p = params[l % C];
    hi[l] = p.mean_hi;
    lo[l] = p.mean_lo;
    c_dy[l] = p.c_dy;
    c_xc[l] = p.c_xc;
    c_0[l] = p.c_0;
  }
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0) {
      const T *dys = a.dy + o, *xs = a.x + o;
      T* dxs = a.dx + o;
      const T *h = hi.data + l0, *lw = lo.data + l0, *k1 = c_dy.data + l0,
              *k2 = c_xc.data + l0, *k3 = c_0.data + l0;
      int64_t q = 0;
      for (; q + kLanes <= len; q += kLanes)
        store16(dxs + q, (load16(k1 + q) * load16(dys + q) +
                          load16(k2 + q) * ((load16(xs + q) - load16(h + q)) - load16(lw + q))) +
                             load16(k3 + q));
      for (; q < len; ++q) dxs[q] = (k1[q] * dys[q] + k2[q] * ((xs[q] - h[q]) - lw[q])) + k3[q];
    });
  });
}

template <class T>
void rows_backward_eval(const BnBackwardArgs<T>& a) {
  const Rows g(a.shape);
  const int64_t C = g.C;
  Scratch<double> m0(g.lanes);
  g.fill_lanes(m0.data, [&](int64_t c) { return double(a.mean[c]); });
  Scratch<T> k(g.lanes);
  g.fill_lanes(k.data, [&](int64_t c) { return T(weight_at(a.weight, c) * double(a.invstd[c])); });
  Scratch<BackwardSums> part(g.blocks * C);
  rows_backward_sums<T, true>(g, a, m0.data, k.data, part.data);
  for (int64_t c = 0; c < C; ++c) {
    BackwardSums total = {0, 0, 0};
    for (int64_t b = 0; b < g.blocks; ++b) add_sums(total, part[b * C + c]);
    a.dbias[c] = total.sum_dy;
    a.dweight[c] = total.sum_dy_xc * double(a.invstd[c]);
  }
}

// ---------------------------------------------------------------------- entry points

template <class T> void forward_train(const BnForwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_forward_train(a) : planes_forward_train(a);
}
template <class T> void forward_eval(const BnForwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_forward_eval(a) : planes_forward_eval(a);
}
template <class T> void backward_train(const BnBackwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_backward_train(a) : planes_backward_train(a);
}
template <class T> void backward_eval(const BnBackwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_backward_eval(a) : planes_backward_eval(a);
}

template <class T> BatchNormKernels<T> batch_norm_kernels() {
  return {&forward_train<T>, &forward_eval<T>, &backward_train<T>, &backward_eval<T>};
}

}  // namespace

void fill_batch_norm(KernelTable& table) {
  table.bn_f32 = batch_norm_kernels<float>();
  table.bn_f64 = batch_norm_kernels<double>();
}

FASTNN_CPU_NAMESPACE_END

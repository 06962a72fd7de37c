// Batch norm forward and backward on the CPU, compiled once per instruction set
// (CMakeLists.txt). The formulas live in fastnn/bn_math.h.
//
// Two layouts of x, both C-contiguous (cpu::BnShape):
//  planes (N, C, S), S > 1: channel c is N planes of S contiguous values. Statistics
//         are taken per piece (part of a plane, or a few small planes) and merged per
//         channel in a fixed order.
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

// activation='relu' (fastnn/bn_math.h), chosen at compile time: kRelu = false is the
// plain batch norm, bit for bit.
template <bool kRelu, class T>
inline Vec16<T> activate(const Vec16<T>& z) {
  if (!kRelu) return z;
  return lanewise<T>([&](int k) { return bn_relu(z.r[k]); });
}
template <bool kRelu, class T>
inline T activate(T z) {
  return kRelu ? bn_relu(z) : z;
}

// The gradient the batch norm sees: dy, or with the ReLU dy where the forward's y > 0.
// y is the mask stream: a.y with the ReLU, else any valid pointer (dy), never read.
template <bool kRelu, class T>
inline const T* mask_stream(const BnBackwardArgs<T>& a) {
  return kRelu ? a.y : a.dy;
}
template <bool kRelu, class T>
inline Vec16<T> masked16(const Vec16<T>& dy, const Vec16<T>& y) {
  if (!kRelu) return dy;
  return lanewise<T>([&](int k) { return bn_relu_grad(dy.r[k], y.r[k]); });
}
template <bool kRelu, class T>
inline Vec16<T> grad16(const T* dy, const T* y) {
  return masked16<kRelu>(load16(dy), kRelu ? load16(y) : Vec16<T>{});
}
template <bool kRelu, class T>
inline Vec16<double> grad16_f64(const T* dy, const T* y) {
  return masked16<kRelu>(load16_f64(dy), kRelu ? load16_f64(y) : Vec16<double>{});
}
template <bool kRelu, class T>
inline Vec16<double> grad_tail16_f64(const T* dy, const T* y, int64_t n) {
  return masked16<kRelu>(load_tail16_f64(dy, n), kRelu ? load_tail16_f64(y, n) : Vec16<double>{});
}
template <bool kRelu, class T>
inline T grad1(const T* dy, const T* y) {
  return kRelu ? bn_relu_grad(*dy, *y) : *dy;
}

// A task takes whole channels (two passes over a channel back to back, the second
// from cache) when a channel's streams fit in this many bytes.
constexpr int64_t kChannelInCacheBytes = int64_t(8) << 20;

// ------------------------------------------------------------------ planes layout

constexpr int64_t kPiece = 4096;            // values per statistics piece (about)
constexpr int64_t kSmallPlaneBytes = 2048;  // smaller planes are walked group-major

// Pieces of channel c: a plane of S >= kPiece values is cut into J pieces; smaller
// planes are grouped, G consecutive planes (n) of one channel per piece, so small
// planes (7 x 7) don't pay a reduction and a merge each. A piece's values go to 16
// lanes, plane by plane, and pieces merge in (group, j) order, whatever order the
// work runs in:
//  - whole channels: a task takes a channel, two passes back to back, the second
//    from cache (planes of 2 KB or more, channel small enough, threads balanced);
//  - group-major: a task takes a group of planes for all channels, walking memory in
//    order (smaller planes: too short for the prefetchers to follow one channel);
//  - pieces: tasks are pieces in memory order.
struct Planes {
  int64_t N, C, S, J, G, NG;  // NG groups of G planes
  explicit Planes(const BnShape& s)
      : N(s.outer), C(s.channels), S(s.inner),
        J(s.inner >= kPiece ? (s.inner + kPiece - 1) / kPiece : 1),
        G(s.inner >= kPiece ? 1 : min64(kPiece / s.inner, (s.outer + 15) / 16)),
        NG((s.outer + G - 1) / G) {}
  int64_t pieces() const { return NG * C * J; }
  int64_t piece(int64_t group, int64_t c, int64_t j) const { return (group * C + c) * J + j; }
  int64_t channel(int64_t t) const { return (t / J) % C; }
  double count() const { return double(N) * double(S); }
  int64_t planes_in(int64_t group) const { return min64(G, N - group * G); }

  // f(offset, len) for the contiguous runs of piece t, one per plane, in order.
  template <class F> void for_each_run(int64_t t, F f) const {
    const int64_t j = t % J, c = channel(t), n0 = t / J / C * G, n1 = min64(N, n0 + G);
    const int64_t len = min64(kPiece, S - j * kPiece);
    for (int64_t n = n0; n < n1; ++n) f((n * C + c) * S + j * kPiece, len);
  }
  // f(c, offset) for the planes of a group in memory order (J == 1: S < kPiece).
  template <class F> void for_group_planes(int64_t group, F f) const {
    for (int64_t n = group * G; n < group * G + planes_in(group); ++n)
      for (int64_t c = 0; c < C; ++c) f(c, (n * C + c) * S);
  }
  template <class F> void for_pieces_of_channel(int64_t c, F f) const {
    for (int64_t group = 0; group < NG; ++group)
      for (int64_t j = 0; j < J; ++j) f(piece(group, c, j));
  }
  // The same pieces last to first: a second pass over a channel starts with what the
  // first pass left in cache most recently.
  template <class F> void for_pieces_of_channel_reversed(int64_t c, F f) const {
    for (int64_t group = NG - 1; group >= 0; --group)
      for (int64_t j = J - 1; j >= 0; --j) f(piece(group, c, j));
  }

  enum Order { kWholeChannels, kGroupMajor, kPieces };
  Order order(int threads, int64_t elem_bytes, int64_t streams) const {
    if (S * elem_bytes < kSmallPlaneBytes) return kGroupMajor;
    const bool balanced = threads <= 1 || C % threads == 0 || C >= 8 * threads;
    if (balanced && streams * N * S * elem_bytes <= kChannelInCacheBytes) return kWholeChannels;
    return kPieces;
  }
};

// Shifted sums of one run into 16 lanes (value i in lane i % 16), in float64.
struct StatsLanes {
  Vec16<double> s1, s2;  // sum(x - shift), sum((x - shift)^2)
};

template <class T>
inline void stats_run(const T* p, int64_t len, double shift, StatsLanes& s) {
  auto add = [&](const Vec16<double>& d) {
    s.s1 += d;
    s.s2 += d * d;
  };
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) add(load16_f64(p + i) - shift);
  if (i < len) add(first_lanes(load_tail16_f64(p + i, len - i) - shift, len - i));
}

inline StatsLanes zero_stats_lanes() { return {zeros16<double>(), zeros16<double>()}; }

inline ChunkStats reduce_stats_lanes(double count, const StatsLanes& s) {
  return chunk_from_shifted_sums(count, reduce_lanes(s.s1), reduce_lanes(s.s2));
}

// sum(dy), sum(dy * (x - m0)), sum(x - m0) of one run into 16 lanes; with kWriteDx
// also dx = dy * k in the same pass (the eval backward).
struct BackwardLanes {
  Vec16<double> dy, dy_xc, xc;
};

template <bool kWriteDx, bool kRelu, class T>
inline void backward_run(const T* dy, const T* y, const T* x, int64_t len, double m0,
                         BackwardLanes& s, T* dx, T k) {
  auto add = [&](const Vec16<double>& g, const Vec16<double>& xc) {
    s.dy += g;
    s.dy_xc += g * xc;
    s.xc += xc;
  };
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    add(grad16_f64<kRelu>(dy + i, y + i), load16_f64(x + i) - m0);
    if (kWriteDx) store16(dx + i, grad16<kRelu>(dy + i, y + i) * k);  // after the loads: dx may be dy, y or x
  }
  if (i < len) {  // padding lanes: dy = 0 and x - m0 = 0
    add(grad_tail16_f64<kRelu>(dy + i, y + i, len - i),
        first_lanes(load_tail16_f64(x + i, len - i) - m0, len - i));
    if (kWriteDx)
      for (; i < len; ++i) dx[i] = grad1<kRelu>(dy + i, y + i) * k;
  }
}

inline BackwardLanes zero_backward_lanes() {
  return {zeros16<double>(), zeros16<double>(), zeros16<double>()};
}

inline BackwardSums reduce_backward_lanes(const BackwardLanes& s) {
  return {reduce_lanes(s.dy), reduce_lanes(s.dy_xc), reduce_lanes(s.xc)};
}

inline void add_sums(BackwardSums& a, const BackwardSums& b) {
  a.sum_dy += b.sum_dy;
  a.sum_dy_xc += b.sum_dy_xc;
  a.sum_xc += b.sum_xc;
}

template <class T>
ChunkStats piece_stats(const Planes& g, const T* x, int64_t t, double shift) {
  StatsLanes s = zero_stats_lanes();
  int64_t count = 0;
  g.for_each_run(t, [&](int64_t o, int64_t len) {
    stats_run(x + o, len, shift, s);
    count += len;
  });
  return reduce_stats_lanes(double(count), s);
}

// part[piece] for every piece of a group, walking the group's memory in order with one
// set of lanes per channel in scratch.
template <class T>
void group_stats(const Planes& g, const T* x, int64_t group, const double* shift,
                 StatsLanes* lanes, ChunkStats* part) {
  for (int64_t c = 0; c < g.C; ++c) lanes[c] = zero_stats_lanes();
  g.for_group_planes(group, [&](int64_t c, int64_t o) {
    StatsLanes s = lanes[c];  // in registers for the run
    stats_run(x + o, g.S, shift[c], s);
    lanes[c] = s;
  });
  const double count = double(g.planes_in(group) * g.S);
  for (int64_t c = 0; c < g.C; ++c) part[g.piece(group, c, 0)] = reduce_stats_lanes(count, lanes[c]);
}

template <bool kWriteDx, bool kRelu, class T>
BackwardSums piece_backward_sums(const Planes& g, const BnBackwardArgs<T>& a, int64_t t, T k = T(0)) {
  BackwardLanes s = zero_backward_lanes();
  const double m0 = double(a.mean[g.channel(t)]);
  g.for_each_run(t, [&](int64_t o, int64_t len) {
    backward_run<kWriteDx, kRelu>(a.dy + o, mask_stream<kRelu>(a) + o, a.x + o, len, m0, s, a.dx + o, k);
  });
  return reduce_backward_lanes(s);
}

// Backward sums of every piece of a group, in memory order (see group_stats); k is
// the per-channel dx = dy * k of the eval backward.
template <bool kWriteDx, bool kRelu, class T>
void group_backward_sums(const Planes& g, const BnBackwardArgs<T>& a, int64_t group, const T* k,
                         BackwardLanes* lanes, BackwardSums* part) {
  for (int64_t c = 0; c < g.C; ++c) lanes[c] = zero_backward_lanes();
  g.for_group_planes(group, [&](int64_t c, int64_t o) {
    BackwardLanes s = lanes[c];  // in registers for the run
    backward_run<kWriteDx, kRelu>(a.dy + o, mask_stream<kRelu>(a) + o, a.x + o, g.S,
                                  double(a.mean[c]), s, a.dx + o, kWriteDx ? k[c] : T(0));
    lanes[c] = s;
  });
  for (int64_t c = 0; c < g.C; ++c) part[g.piece(group, c, 0)] = reduce_backward_lanes(lanes[c]);
}

// Fills part[t] for every piece, running groups (group-major) or pieces as tasks.
template <class Group, class Piece>
void all_pieces(const Planes& g, Planes::Order order, int threads, int64_t scratch_per_worker,
                Group group_task, Piece piece_task) {
  if (order == Planes::kGroupMajor) {
    Scratch<char> scratch(workers(g.NG, threads) * scratch_per_worker);
    parallel_for_workers(g.NG, threads, [&](int64_t group, int w) {
      group_task(group, scratch.data + w * scratch_per_worker);
    });
  } else {
    parallel_for(g.pieces(), threads, piece_task);
  }
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

// f(c, offset, len) for every run of every piece, in parallel, group-major or by pieces.
template <class F>
void parallel_runs(const Planes& g, Planes::Order order, int threads, F f) {
  if (order == Planes::kGroupMajor) {
    parallel_for(g.NG, threads, [&](int64_t group) {
      g.for_group_planes(group, [&](int64_t c, int64_t o) { f(c, o, g.S); });
    });
  } else {
    parallel_for(g.pieces(), threads, [&](int64_t t) {
      const int64_t c = g.channel(t);
      g.for_each_run(t, [&](int64_t o, int64_t len) { f(c, o, len); });
    });
  }
}

// y = bn_normalize(x) everywhere, with per-channel params.
template <bool kRelu, class T>
void normalize_all(const Planes& g, Planes::Order order, const BnForwardArgs<T>& a,
                   const NormalizeParams<T>* params) {
  parallel_runs(g, order, a.threads, [&](int64_t c, int64_t o, int64_t len) {
    const NormalizeParams<T>& p = params[c];
    map16(a.x + o, a.y + o, len, [&p](auto v) { return activate<kRelu>(bn_normalize(v, p)); });
  });
}

template <bool kRelu, class T>
void planes_forward_train(const BnForwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<double> shift(g.C);  // each channel's first value
  for (int64_t c = 0; c < g.C; ++c) shift[c] = double(a.x[c * g.S]);
  const Planes::Order order = g.order(a.threads, sizeof(T), 1);

  if (order == Planes::kWholeChannels) {
    parallel_for(g.C, a.threads, [&](int64_t c) {
      ChunkStats total = {0, 0, 0};
      g.for_pieces_of_channel(c, [&](int64_t t) { chan_merge(total, piece_stats(g, a.x, t, shift[c])); });
      const NormalizeParams<T> p = finish_forward_channel(a, c, shift[c], total);
      g.for_pieces_of_channel_reversed(c, [&](int64_t t) {
        g.for_each_run(t, [&](int64_t o, int64_t len) {
          map16(a.x + o, a.y + o, len, [&p](auto v) { return activate<kRelu>(bn_normalize(v, p)); });
        });
      });
    });
    return;
  }
  Scratch<ChunkStats> part(g.pieces());
  all_pieces(
      g, order, a.threads, int64_t(sizeof(StatsLanes)) * g.C,
      [&](int64_t group, char* scratch) {
        group_stats(g, a.x, group, shift.data, reinterpret_cast<StatsLanes*>(scratch), part.data);
      },
      [&](int64_t t) { part[t] = piece_stats(g, a.x, t, shift[g.channel(t)]); });
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c) {
    ChunkStats total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { chan_merge(total, part[t]); });
    params[c] = finish_forward_channel(a, c, shift[c], total);
  }
  normalize_all<kRelu>(g, order, a, params.data);
}

template <bool kRelu, class T>
void planes_forward_eval(const BnForwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c)
    params[c] = normalize_params<T>(a.mean[c], a.invstd[c], weight_at(a.weight, c),
                                    bias_at(a.bias, c));
  normalize_all<kRelu>(g, g.order(a.threads, sizeof(T), 1) == Planes::kGroupMajor ? Planes::kGroupMajor
                                                                          : Planes::kPieces,
                a, params.data);
}

template <class T>
BackwardParams<T> finish_backward_channel(const BnBackwardArgs<T>& a, int64_t c, double count,
                                          const BackwardSums& s) {
  return backward_train_params<T>(s, count, double(a.mean[c]), double(a.invstd[c]),
                                  weight_at(a.weight, c), &a.dweight[c], &a.dbias[c]);
}

// Eval backward: dbias = sum(dy), dweight = sum(dy * (x - mean)) * invstd.
template <class T>
void store_eval_backward(const BnBackwardArgs<T>& a, int64_t c, const BackwardSums& total) {
  a.dbias[c] = total.sum_dy;
  a.dweight[c] = total.sum_dy_xc * double(a.invstd[c]);
}

template <bool kRelu, class T>
void planes_backward_train(const BnBackwardArgs<T>& a) {
  const Planes g(a.shape);
  const Planes::Order order = g.order(a.threads, sizeof(T), kRelu ? 3 : 2);
  auto write_dx = [&](int64_t o, int64_t len, const BackwardParams<T>& p) {
    const T *dy = a.dy + o, *y = mask_stream<kRelu>(a) + o, *x = a.x + o;
    T* dx = a.dx + o;  // may be dy, y or x: each element is read before it is written
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes)
      store16(dx + i, bn_backward_dx(grad16<kRelu>(dy + i, y + i), load16(x + i), p));
    for (; i < len; ++i) dx[i] = bn_backward_dx(grad1<kRelu>(dy + i, y + i), x[i], p);
  };

  if (order == Planes::kWholeChannels) {
    parallel_for(g.C, a.threads, [&](int64_t c) {
      BackwardSums total = {0, 0, 0};
      g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, piece_backward_sums<false, kRelu>(g, a, t)); });
      const BackwardParams<T> p = finish_backward_channel(a, c, g.count(), total);
      g.for_pieces_of_channel_reversed(c, [&](int64_t t) {
        g.for_each_run(t, [&](int64_t o, int64_t len) { write_dx(o, len, p); });
      });
    });
    return;
  }
  Scratch<BackwardSums> part(g.pieces());
  all_pieces(
      g, order, a.threads, int64_t(sizeof(BackwardLanes)) * g.C,
      [&](int64_t group, char* scratch) {
        group_backward_sums<false, kRelu>(g, a, group, static_cast<const T*>(nullptr),
                                   reinterpret_cast<BackwardLanes*>(scratch), part.data);
      },
      [&](int64_t t) { part[t] = piece_backward_sums<false, kRelu>(g, a, t); });
  Scratch<BackwardParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c) {
    BackwardSums total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, part[t]); });
    params[c] = finish_backward_channel(a, c, g.count(), total);
  }
  parallel_runs(g, order, a.threads,
                [&](int64_t c, int64_t o, int64_t len) { write_dx(o, len, params[c]); });
}

// Eval backward in one pass: dx = dy * weight * invstd while summing dy and dy * (x - mean).
template <bool kRelu, class T>
void planes_backward_eval(const BnBackwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<T> k(g.C);
  for (int64_t c = 0; c < g.C; ++c) k[c] = T(weight_at(a.weight, c) * double(a.invstd[c]));
  Scratch<BackwardSums> part(g.pieces());
  all_pieces(
      g, g.order(a.threads, sizeof(T), kRelu ? 3 : 2) == Planes::kGroupMajor ? Planes::kGroupMajor : Planes::kPieces,
      a.threads, int64_t(sizeof(BackwardLanes)) * g.C,
      [&](int64_t group, char* scratch) {
        group_backward_sums<true, kRelu>(g, a, group, k.data, reinterpret_cast<BackwardLanes*>(scratch),
                                  part.data);
      },
      [&](int64_t t) { part[t] = piece_backward_sums<true, kRelu>(g, a, t, k[g.channel(t)]); });
  for (int64_t c = 0; c < g.C; ++c) {
    BackwardSums total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, part[t]); });
    store_eval_backward(a, c, total);
  }
}

// -------------------------------------------------------------------- rows layout

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

// ---------------------------------------------------------------------- entry points

template <bool kRelu, class T> void forward_train(const BnForwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_forward_train<kRelu>(a) : planes_forward_train<kRelu>(a);
}
template <bool kRelu, class T> void forward_eval(const BnForwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_forward_eval<kRelu>(a) : planes_forward_eval<kRelu>(a);
}
template <bool kRelu, class T> void backward_train(const BnBackwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_backward_train<kRelu>(a) : planes_backward_train<kRelu>(a);
}
template <bool kRelu, class T> void backward_eval(const BnBackwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_backward_eval<kRelu>(a) : planes_backward_eval<kRelu>(a);
}
template <class T> void forward_train(const BnForwardArgs<T>& a) {
  a.relu ? forward_train<true>(a) : forward_train<false>(a);
}
template <class T> void forward_eval(const BnForwardArgs<T>& a) {
  a.relu ? forward_eval<true>(a) : forward_eval<false>(a);
}
template <class T> void backward_train(const BnBackwardArgs<T>& a) {
  a.y ? backward_train<true>(a) : backward_train<false>(a);
}
template <class T> void backward_eval(const BnBackwardArgs<T>& a) {
  a.y ? backward_eval<true>(a) : backward_eval<false>(a);
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

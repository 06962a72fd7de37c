// Batch norm on the CPU, planes layout: x is (N, C, S) with S > 1, channel c is N
// planes of S contiguous values. Statistics are taken per piece (part of a plane, or a
// few small planes) and merged per channel in a fixed order, so the bits do not depend
// on the thread count or the instruction set. Compiled once per instruction set.
#include <stdint.h>

#include "cpu/batch_norm_lanes.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

// A task takes whole channels (two passes over a channel back to back, the second
// from cache) when a channel's streams fit in this many bytes (half a core's L2: a
// channel that only fits the shared L3 came back slower than two passes in memory order).
constexpr int64_t kChannelInCacheBytes = int64_t(1) << 20;

constexpr int64_t kPiece = 4096;            // values per statistics piece (about)
constexpr int64_t kSmallPlaneBytes = 2048;  // smaller planes are walked group-major
// Planes of up to a page or two, when a channel does not fit the cache, are walked
// group-major too: one channel's planes are a page or more apart, and the hardware
// prefetchers stop at each page, so a task per piece of a channel reads at half speed.
constexpr int64_t kPagePlaneBytes = 8192;

// Pieces of channel c: a plane of S >= kPiece values is cut into J pieces; smaller
// planes are grouped, G consecutive planes (n) of one channel per piece, so small
// planes (7 x 7) don't pay a reduction and a merge each. A piece's values go to 16
// lanes, plane by plane, and pieces merge in (group, j) order, whatever order the
// work runs in:
//  - whole channels: a task takes a channel, two passes back to back, the second
//    from cache (planes of 2 KB or more, channel small enough, threads balanced);
//  - group-major: a task takes a group of planes for all channels, walking memory in
//    order (planes under 2 KB, too short for the prefetchers to follow one channel,
//    and planes under 8 KB whose channel does not fit the cache);
//  - pieces: tasks are pieces in memory order.
// The fused ReLU backward's mask (batch_norm_lanes.h) has S16 words per plane; a run
// at value s of its plane starts at bit plane * 16 * S16 + s (s is a multiple of 16).
struct Planes {
  int64_t N, C, S, J, G, NG;  // NG groups of G planes
  int64_t S16;                // mask words per plane
  explicit Planes(const BnShape& s)
      : N(s.outer), C(s.channels), S(s.inner),
        J(s.inner >= kPiece ? (s.inner + kPiece - 1) / kPiece : 1),
        G(s.inner >= kPiece ? 1 : min64(kPiece / s.inner, (s.outer + 15) / 16)),
        NG((s.outer + G - 1) / G), S16((s.inner + kLanes - 1) / kLanes) {}
  int64_t mask_words() const { return N * C * S16 + 1; }
  int64_t pieces() const { return NG * C * J; }
  int64_t piece(int64_t group, int64_t c, int64_t j) const { return (group * C + c) * J + j; }
  int64_t channel(int64_t t) const { return (t / J) % C; }
  double count() const { return double(N) * double(S); }
  int64_t planes_in(int64_t group) const { return min64(G, N - group * G); }

  // f(offset, len, bit) for the contiguous runs of piece t, one per plane, in order;
  // bit: the run's first mask bit.
  template <class F> void for_each_run(int64_t t, F f) const {
    const int64_t j = t % J, c = channel(t), n0 = t / J / C * G, n1 = min64(N, n0 + G);
    const int64_t len = min64(kPiece, S - j * kPiece);
    for (int64_t n = n0; n < n1; ++n) f((n * C + c) * S + j * kPiece, len, (n * C + c) * S16 * kLanes + j * kPiece);
  }
  // f(c, offset, bit) for the planes of a group in memory order (J == 1: S < kPiece).
  template <class F> void for_group_planes(int64_t group, F f) const {
    for (int64_t n = group * G; n < group * G + planes_in(group); ++n)
      for (int64_t c = 0; c < C; ++c) f(c, (n * C + c) * S, (n * C + c) * S16 * kLanes);
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
    return S * elem_bytes < kPagePlaneBytes ? kGroupMajor : kPieces;
  }
};

// Shifted sums of one run into 16 lanes (value i in lane i % 16), in float64.
struct StatsLanes {
  Vec16<double> s1, s2;  // sum(x - shift), sum((x - shift)^2)
};

template <class T>
FASTNN_RUN_LOOP inline void stats_run(const T* p, int64_t len, double shift, StatsLanes& sums) {
  StatsLanes s = sums;  // in registers for the run
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    const Vec16<double> d = load16_f64(p + i) - shift;
    s.s1 += d;
    s.s2 += d * d;
  }
  if (i < len) {
    const Vec16<double> d = first_lanes(load_tail16_f64(p + i, len - i) - shift, len - i);
    s.s1 += d;
    s.s2 += d * d;
  }
  sums = s;
}

inline StatsLanes zero_stats_lanes() { return {zeros16<double>(), zeros16<double>()}; }

inline ChunkStats reduce_stats_lanes(double count, const StatsLanes& s) {
  return chunk_from_shifted_sums(count, reduce_lanes(s.s1), reduce_lanes(s.s2));
}

// sum(dy), sum(dy * (x - m0)), sum(x - m0) of one run into 16 lanes; with kWriteDx
// also dx = dy * k in the same pass (the eval backward). With the ReLU, dy counts where
// y > 0; the training pass also writes that mask's bits from `bit` on (mask non-null).
struct BackwardLanes {
  Vec16<double> dy, dy_xc, xc;
};

inline void add_backward(BackwardLanes& s, const Vec16<double>& g, const Vec16<double>& xc) {
  s.dy += g;
  s.dy_xc += g * xc;
  s.xc += xc;
}

template <bool kWriteDx, bool kRelu, class T>
FASTNN_RUN_LOOP inline void backward_run(const T* dy, const T* y, const T* x, int64_t len, double m0,
                                         BackwardLanes& sums, T* dx, T k, uint16_t* mask) {
  BackwardLanes s = sums;  // in registers for the run
  const bool write_mask = kRelu && !kWriteDx;
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    if (kRelu) {
      uint32_t bits;
      const Vec16<T> g = relu_masked16(dy + i, y + i, bits);
      if (write_mask) mask[i / kLanes] = uint16_t(bits);
      add_backward(s, widen16(g), load16_f64(x + i) - m0);
      if (kWriteDx) store16(dx + i, g * k);  // after the loads: dx may be dy, y or x
    } else {
      add_backward(s, load16_f64(dy + i), load16_f64(x + i) - m0);
      if (kWriteDx) store16(dx + i, load16(dy + i) * k);
    }
  }
  if (i < len) {  // padding lanes: dy = 0 and x - m0 = 0
    if (write_mask) {
      T tail[kLanes] = {};
      for (int64_t j = i; j < len; ++j) tail[j - i] = y[j];
      mask[i / kLanes] = uint16_t(lane_bits16(load16(tail) > T(0)));
    }
    add_backward(s, grad_tail16_f64<kRelu>(dy + i, y + i, len - i),
                 first_lanes(load_tail16_f64(x + i, len - i) - m0, len - i));
    if (kWriteDx)
      for (; i < len; ++i) dx[i] = grad1<kRelu>(dy + i, y + i) * k;
  }
  sums = s;
}

inline BackwardLanes zero_backward_lanes() {
  return {zeros16<double>(), zeros16<double>(), zeros16<double>()};
}

inline BackwardSums reduce_backward_lanes(const BackwardLanes& s) {
  return {reduce_lanes(s.dy), reduce_lanes(s.dy_xc), reduce_lanes(s.xc)};
}


template <class T>
ChunkStats piece_stats(const Planes& g, const T* x, int64_t t, double shift) {
  StatsLanes s = zero_stats_lanes();
  int64_t count = 0;
  g.for_each_run(t, [&](int64_t o, int64_t len, int64_t) {
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
  g.for_group_planes(group, [&](int64_t c, int64_t o, int64_t) {
    StatsLanes s = lanes[c];  // in registers for the run
    stats_run(x + o, g.S, shift[c], s);
    lanes[c] = s;
  });
  const double count = double(g.planes_in(group) * g.S);
  for (int64_t c = 0; c < g.C; ++c) part[g.piece(group, c, 0)] = reduce_stats_lanes(count, lanes[c]);
}

// The fused ReLU's mask words (training backward), or null.
template <bool kRelu>
inline uint16_t* mask_words(uint16_t* mask, int64_t bit) {
  return kRelu && mask ? mask + bit / kLanes : nullptr;
}

template <bool kWriteDx, bool kRelu, class T>
BackwardSums piece_backward_sums(const Planes& g, const BnBackwardArgs<T>& a, int64_t t, T k,
                                 uint16_t* mask) {
  BackwardLanes s = zero_backward_lanes();
  const double m0 = double(a.mean[g.channel(t)]);
  g.for_each_run(t, [&](int64_t o, int64_t len, int64_t bit) {
    backward_run<kWriteDx, kRelu>(a.dy + o, mask_stream<kRelu>(a) + o, a.x + o, len, m0, s, a.dx + o, k,
                                  mask_words<kRelu>(mask, bit));
  });
  return reduce_backward_lanes(s);
}

// Backward sums of every piece of a group, in memory order (see group_stats); k is
// the per-channel dx = dy * k of the eval backward.
template <bool kWriteDx, bool kRelu, class T>
void group_backward_sums(const Planes& g, const BnBackwardArgs<T>& a, int64_t group, const T* k,
                         BackwardLanes* lanes, BackwardSums* part, uint16_t* mask) {
  for (int64_t c = 0; c < g.C; ++c) lanes[c] = zero_backward_lanes();
  g.for_group_planes(group, [&](int64_t c, int64_t o, int64_t bit) {
    BackwardLanes s = lanes[c];  // in registers for the run
    backward_run<kWriteDx, kRelu>(a.dy + o, mask_stream<kRelu>(a) + o, a.x + o, g.S,
                                  double(a.mean[c]), s, a.dx + o, kWriteDx ? k[c] : T(0),
                                  mask_words<kRelu>(mask, bit));
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

// f(c, offset, len, bit) for every run of every piece, in parallel, group-major or by
// pieces; with kStream, a fence ends each task.
template <bool kStream, class F>
void parallel_runs(const Planes& g, Planes::Order order, int threads, F f) {
  if (order == Planes::kGroupMajor) {
    parallel_for(g.NG, threads, [&](int64_t group) {
      g.for_group_planes(group, [&](int64_t c, int64_t o, int64_t bit) { f(c, o, g.S, bit); });
      if (kStream) stream_fence();
    });
  } else {
    parallel_for(g.pieces(), threads, [&](int64_t t) {
      const int64_t c = g.channel(t);
      g.for_each_run(t, [&](int64_t o, int64_t len, int64_t bit) { f(c, o, len, bit); });
      if (kStream) stream_fence();
    });
  }
}

// y = bn_normalize(x) over one run.
template <bool kStream, bool kRelu, class T>
inline void normalize_run(const T* x, T* y, int64_t len, const NormalizeParams<T>& params) {
  const NormalizeParams<T> p = params;  // a local: the stores to y can't change it
  write_run<kStream>(
      y, len, [=](int64_t i) { return activate<kRelu>(bn_normalize(load16(x + i), p)); },
      [=](int64_t i) { return activate<kRelu>(bn_normalize(x[i], p)); });
}

// y = bn_normalize(x) everywhere, with per-channel params.
template <bool kStream, bool kRelu, class T>
void normalize_all(const Planes& g, Planes::Order order, const BnForwardArgs<T>& a,
                   const NormalizeParams<T>* params) {
  parallel_runs<kStream>(g, order, a.threads, [&](int64_t c, int64_t o, int64_t len, int64_t) {
    normalize_run<kStream, kRelu>(a.x + o, a.y + o, len, params[c]);
  });
}

// The output passes stream past the cache when the arrays a pass touches don't fit in it.
template <class T>
inline bool stream_output(const Planes& g, int64_t arrays) {
  return streaming_pays(arrays * g.N * g.C * g.S * int64_t(sizeof(T)));
}

template <bool kStream, bool kRelu, class T>
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
        g.for_each_run(t, [&](int64_t o, int64_t len, int64_t) {
          normalize_run<kStream, kRelu>(a.x + o, a.y + o, len, p);
        });
      });
      if (kStream) stream_fence();
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
  normalize_all<kStream, kRelu>(g, order, a, params.data);
}

template <bool kStream, bool kRelu, class T>
void planes_forward_eval(const BnForwardArgs<T>& a) {
  const Planes g(a.shape);
  Scratch<NormalizeParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c)
    params[c] = normalize_params<T>(a.mean[c], a.invstd[c], weight_at(a.weight, c),
                                    bias_at(a.bias, c));
  normalize_all<kStream, kRelu>(
      g, g.order(a.threads, sizeof(T), 1) == Planes::kGroupMajor ? Planes::kGroupMajor : Planes::kPieces,
      a, params.data);
}

// Training backward: the sums (pass 1), then dx (pass 2). With the ReLU, pass 1 keeps
// the mask as bits, so pass 2 reads dy and x (and the bits), not y.
template <bool kStream, bool kRelu, class T>
void planes_backward_train(const BnBackwardArgs<T>& a) {
  const Planes g(a.shape);
  const Planes::Order order = g.order(a.threads, sizeof(T), 2);
  Scratch<uint16_t> mask(kRelu ? g.mask_words() : 0);
  if (kRelu) mask[g.mask_words() - 1] = 0;  // the padding word bits_at may read
  const uint16_t* bits = mask.data;
  // The lambdas copy what they use: a streaming store may alias anything, and values
  // read through a reference would be reloaded after each one.
  auto write_dx = [&](int64_t o, int64_t len, int64_t bit, const BackwardParams<T> p) {
    const T *dy = a.dy + o, *x = a.x + o;
    T* dx = a.dx + o;  // may be dy, y or x: each element is read before it is written
    write_run<kStream>(
        dx, len,
        [=](int64_t i) {
          const Vec16<T> d = load16(dy + i);
          return bn_backward_dx(kRelu ? keep_bits16(bits_at(bits, bit + i), d) : d, load16(x + i), p);
        },
        [=](int64_t i) {
          const T d = kRelu && !(bits_at(bits, bit + i) & 1) ? T(0) : dy[i];
          return bn_backward_dx(d, x[i], p);
        });
  };

  if (order == Planes::kWholeChannels) {
    parallel_for(g.C, a.threads, [&](int64_t c) {
      BackwardSums total = {0, 0, 0};
      g.for_pieces_of_channel(c, [&](int64_t t) {
        add_sums(total, piece_backward_sums<false, kRelu>(g, a, t, T(0), mask.data));
      });
      const BackwardParams<T> p = finish_backward_channel(a, c, g.count(), total);
      g.for_pieces_of_channel_reversed(c, [&](int64_t t) {
        g.for_each_run(t, [&](int64_t o, int64_t len, int64_t bit) { write_dx(o, len, bit, p); });
      });
      if (kStream) stream_fence();
    });
    return;
  }
  Scratch<BackwardSums> part(g.pieces());
  all_pieces(
      g, order, a.threads, int64_t(sizeof(BackwardLanes)) * g.C,
      [&](int64_t group, char* scratch) {
        group_backward_sums<false, kRelu>(g, a, group, static_cast<const T*>(nullptr),
                                          reinterpret_cast<BackwardLanes*>(scratch), part.data, mask.data);
      },
      [&](int64_t t) { part[t] = piece_backward_sums<false, kRelu>(g, a, t, T(0), mask.data); });
  Scratch<BackwardParams<T>> params(g.C);
  for (int64_t c = 0; c < g.C; ++c) {
    BackwardSums total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, part[t]); });
    params[c] = finish_backward_channel(a, c, g.count(), total);
  }
  parallel_runs<kStream>(g, order, a.threads, [&](int64_t c, int64_t o, int64_t len, int64_t bit) {
    write_dx(o, len, bit, params[c]);
  });
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
                                         part.data, nullptr);
      },
      [&](int64_t t) { part[t] = piece_backward_sums<true, kRelu>(g, a, t, k[g.channel(t)], nullptr); });
  for (int64_t c = 0; c < g.C; ++c) {
    BackwardSums total = {0, 0, 0};
    g.for_pieces_of_channel(c, [&](int64_t t) { add_sums(total, part[t]); });
    store_eval_backward(a, c, total);
  }
}

}  // namespace

// ------------------------------------------------------------------ entry points

template <class T>
void planes_forward_train(const BnForwardArgs<T>& a) {
  with_variant(stream_output<T>(Planes(a.shape), 2), a.relu, [&](auto stream, auto relu) {
    planes_forward_train<stream.value, relu.value>(a);
  });
}
template void planes_forward_train<float>(const BnForwardArgs<float>&);
template void planes_forward_train<double>(const BnForwardArgs<double>&);

template <class T>
void planes_forward_eval(const BnForwardArgs<T>& a) {
  with_variant(stream_output<T>(Planes(a.shape), 2), a.relu, [&](auto stream, auto relu) {
    planes_forward_eval<stream.value, relu.value>(a);
  });
}
template void planes_forward_eval<float>(const BnForwardArgs<float>&);
template void planes_forward_eval<double>(const BnForwardArgs<double>&);

template <class T>
void planes_backward_train(const BnBackwardArgs<T>& a) {
  with_variant(stream_output<T>(Planes(a.shape), a.y ? 4 : 3), a.y != nullptr, [&](auto stream, auto relu) {
    planes_backward_train<stream.value, relu.value>(a);
  });
}
template void planes_backward_train<float>(const BnBackwardArgs<float>&);
template void planes_backward_train<double>(const BnBackwardArgs<double>&);

template <class T>
void planes_backward_eval(const BnBackwardArgs<T>& a) {
  a.y ? planes_backward_eval<true>(a) : planes_backward_eval<false>(a);
}
template void planes_backward_eval<float>(const BnBackwardArgs<float>&);
template void planes_backward_eval<double>(const BnBackwardArgs<double>&);

FASTNN_CPU_NAMESPACE_END

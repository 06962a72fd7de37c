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

// A sums pass walks an item a few strips at a time: kWalkStrips strips of 16 slots side
// by side (a contiguous run of each segment, so memory is read in order) down all its
// segments, the sums in registers, so each slot's sum runs over the segments in order.
// `count` segments with the same slots: the first at flat index o, the others stride
// values apart; their mask words (fused ReLU) start at bit `bit`, bit_stride bits apart.
struct Segments {
  int64_t o, len, l0, stride, count, bit, bit_stride;
};

#if defined(__AVX512F__)
constexpr int kWalkStrips = 4;  // the sums of 4 strips fill half the 32 vector registers
#else
constexpr int kWalkStrips = 2;
#endif

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
  // f(l, c) for each parameter lane l < n (default: lanes) and its channel c = l % C
  // (no division per lane).
  template <class F> void for_lanes(F f, int64_t n = -1) const {
    if (n < 0) n = lanes;
    for (int64_t l = 0, c = 0; l < n; ++l, c = c + 1 == C ? 0 : c + 1) f(l, c);
  }

  // The streamed output passes walk an item's rows as one flat run when they are
  // contiguous in memory (narrow C, or a single tile of columns): row by row, each
  // row's ragged head and tail would share a cache line with the next row's, and a
  // line written partly by streaming stores and partly by plain ones costs a trip to
  // memory (NHWC into a NumPy array, 16 bytes past a line: 1.7x as long). Value i of
  // the run uses parameter lane i % lanes; the tables repeat their first 16 lanes at
  // the end, so a vector can start at any lane. With the fused ReLU, a mask bit's index
  // must be the value's flat index (narrow, or C a multiple of 16).
  bool flat(bool relu) const { return (narrow || tiles == 1) && (!relu || narrow || C % kLanes == 0); }
  int64_t table_lanes() const { return lanes + kLanes; }
  // The item's values: [first, first + count), contiguous when flat().
  int64_t item_first(int64_t item) const { return block(item) * R * C + first_channel(item); }
  int64_t item_count(int64_t item) const { return rows_in(item) * C; }
  // Parameter lanes from a per-channel function.
  template <class V, class F> void fill_lanes(V* lane, F f) const {
    for_lanes([&](int64_t l, int64_t c) { lane[l] = f(c); });
  }
};

// Slots [q, q + 16 * S) of the segments: s1 += sum(d), s2 += sum(d * d) for
// d = x - shift, in float64.
template <int S, class T>
FASTNN_RUN_LOOP inline void stats_strips(const T* x, const Segments& sg, int64_t q, const double* shift,
                                         double* s1, double* s2) {
  Vec16<double> k[S], a1[S], a2[S];
  for (int s = 0; s < S; ++s) {
    k[s] = load16(shift + q + s * kLanes);
    a1[s] = load16(s1 + q + s * kLanes);
    a2[s] = load16(s2 + q + s * kLanes);
  }
  const T* p = x + sg.o + q;
  for (int64_t j = 0; j < sg.count; ++j, p += sg.stride) {
    for (int s = 0; s < S; ++s) {
      const Vec16<double> d = load16_f64(p + s * kLanes) - k[s];
      a1[s] += d;
      a2[s] += d * d;
    }
  }
  for (int s = 0; s < S; ++s) {
    store16(s1 + q + s * kLanes, a1[s]);
    store16(s2 + q + s * kLanes, a2[s]);
  }
}

// The same for one slot q (a tail of fewer than 16).
template <class T>
inline void stats_slot(const T* x, const Segments& sg, int64_t q, const double* shift, double* s1,
                       double* s2) {
  double a1 = s1[q], a2 = s2[q];
  const T* p = x + sg.o + q;
  for (int64_t j = 0; j < sg.count; ++j, p += sg.stride) {
    const double d = double(*p) - shift[q];
    a1 += d;
    a2 += d * d;
  }
  s1[q] = a1;
  s2[q] = a2;
}

// out[i] for i < len, a flat run whose value i uses parameter lane i % period (see
// Rows::flat): vec(i, lane) gives the 16 values at i, one(i, lane) a single value. The
// values before out's first cache line boundary and the last partial vector are stored
// plainly, the rest streamed (the caller calls stream_fence() before its task ends).
// Each value is read before it is written: out may be an input.
template <class T, class VecF, class OneF>
FASTNN_RUN_LOOP inline void stream_flat_run(T* out, int64_t len, int64_t period, const VecF& vec,
                                            const OneF& one) {
  int64_t head = values_to_alignment(out), i = 0, lane = 0;
  if (head < 0 || head > len) head = len;
  for (; i < head; ++i, lane = lane + 1 == period ? 0 : lane + 1) out[i] = one(i, lane);
  for (; i + kLanes <= len; i += kLanes) {
    stream16(out + i, vec(i, lane));
    lane += kLanes;  // period >= 16
    if (lane >= period) lane -= period;
  }
  for (; i < len; ++i, lane = lane + 1 == period ? 0 : lane + 1) out[i] = one(i, lane);
}

// y = bn_normalize(x) with per-channel params, spread into lanes of T so the vectors
// load them like data.
template <bool kStream, bool kRelu, class T>
void rows_normalize(const Rows& g, const BnForwardArgs<T>& a, const NormalizeParams<T>* params) {
  Scratch<T> hi(g.table_lanes()), lo(g.table_lanes()), scale(g.table_lanes()), shift(g.table_lanes());
  g.for_lanes([&](int64_t l, int64_t c) {
    hi[l] = params[c].mean_hi;
    lo[l] = params[c].mean_lo;
    scale[l] = params[c].scale;
    shift[l] = params[c].shift;
  }, g.table_lanes());
  // Value i of x with parameter lane l; copies of the table pointers (a streaming store
  // may alias anything, and values read through a reference would be reloaded).
  const T *h = hi.data, *lw = lo.data, *s = scale.data, *b = shift.data;
  const auto vec = [=](const T* xs, int64_t i, int64_t l) {
    return activate<kRelu>(((load16(xs + i) - load16(h + l)) - load16(lw + l)) * load16(s + l) + load16(b + l));
  };
  const auto one = [=](const T* xs, int64_t i, int64_t l) {
    return activate<kRelu>(((xs[i] - h[l]) - lw[l]) * s[l] + b[l]);
  };
  if (kStream && g.flat(false)) {
    parallel_for(g.items(), a.threads, [&](int64_t item) {
      const int64_t o = g.item_first(item);
      const T* xs = a.x + o;
      stream_flat_run(
          a.y + o, g.item_count(item), g.lanes, [=](int64_t i, int64_t l) { return vec(xs, i, l); },
          [=](int64_t i, int64_t l) { return one(xs, i, l); });
      stream_fence();
    });
    return;
  }
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0, int64_t) {
      const T* xs = a.x + o;
      write_run<kStream>(
          a.y + o, len, [=](int64_t q) { return vec(xs, q, l0 + q); },
          [=](int64_t q) { return one(xs, q, l0 + q); });
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
      int64_t q = 0;
      for (; q + kWalkStrips * kLanes <= sg.len; q += kWalkStrips * kLanes)
        stats_strips<kWalkStrips>(a.x, sg, q, k, acc1, acc2);
      for (; q + kLanes <= sg.len; q += kLanes) stats_strips<1>(a.x, sg, q, k, acc1, acc2);
      for (; q < sg.len; ++q) stats_slot(a.x, sg, q, k, acc1, acc2);
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

// Backward sums of slots [q, q + 16 * S) of the segments (with kTail, S = 1 and a tail
// of n < 16 slots): s_dy += sum(g), s_dyx += sum(g * (x - m0)) and in training
// s_x += sum(x - m0), g the gradient the batch norm sees. In eval also dx = g * k; in
// training with the ReLU, the mask words.
template <int S, bool kEval, bool kRelu, bool kTail, class T>
FASTNN_RUN_LOOP inline void backward_strips(const BnBackwardArgs<T>& a, const Segments& sg, int64_t q, int64_t n,
                                            const double* m0, const T* k, double* s_dy, double* s_dyx,
                                            double* s_x, uint16_t* mask) {
  static_assert(!kTail || S == 1, "a tail is one strip");
  const bool write_mask = kRelu && !kEval;
  const auto load = [n](const auto* p) { return kTail ? load_tail16_f64(p, n) : load16_f64(p); };
  Vec16<double> m[S], a_dy[S], a_dyx[S], a_x[S];
  for (int s = 0; s < S; ++s) {
    const int64_t qs = q + s * kLanes;
    m[s] = load(m0 + qs);  // a tail's padding lanes: 0
    a_dy[s] = load(s_dy + qs);
    a_dyx[s] = load(s_dyx + qs);
    a_x[s] = load(s_x + qs);
  }
  const int64_t word_stride = sg.bit_stride / kLanes;
  uint16_t* words = write_mask ? mask + (sg.bit + q) / kLanes : nullptr;  // strip s: word s
  for (int64_t j = 0, row = sg.o + q; j < sg.count; ++j, row += sg.stride) {
    for (int s = 0; s < S; ++s) {
      const int64_t o = row + s * kLanes;
      Vec16<double> gv, xc;
      T g[kLanes] = {}, xs[kLanes] = {};
      if (kTail) {
        for (int64_t l = 0; l < n; ++l) {
          g[l] = grad1<kRelu>(a.dy + o + l, mask_stream<kRelu>(a) + o + l);
          xs[l] = a.x[o + l];
        }
        if (write_mask) {
          uint32_t b = 0;
          for (int64_t l = 0; l < n; ++l) b |= uint32_t(mask_stream<kRelu>(a)[o + l] > 0) << l;
          words[j * word_stride] = uint16_t(b);
        }
        gv = load16_f64(g);
        xc = load16_f64(xs) - m[s];
      } else {
        if (kRelu) {
          uint32_t bits;
          store16(g, relu_masked16(a.dy + o, a.y + o, bits));
          if (write_mask) words[j * word_stride + s] = uint16_t(bits);
          gv = load16_f64(g);
        } else {
          gv = load16_f64(a.dy + o);
        }
        xc = load16_f64(a.x + o) - m[s];
      }
      a_dy[s] += gv;
      a_dyx[s] += gv * xc;
      if (!kEval) a_x[s] += xc;
      if (kEval) {  // dx = g * k, after the loads (dx may be dy, y or x)
        const int64_t qs = q + s * kLanes;
        if (kTail) {
          for (int64_t l = 0; l < n; ++l)
            a.dx[o + l] = grad1<kRelu>(a.dy + o + l, mask_stream<kRelu>(a) + o + l) * k[qs + l];
        } else {
          store16(a.dx + o, (kRelu ? load16(g) : load16(a.dy + o)) * load16(k + qs));
        }
      }
    }
  }
  for (int s = 0; s < S; ++s) {
    const int64_t qs = q + s * kLanes;
    double t_dy[kLanes], t_dyx[kLanes], t_x[kLanes];
    store16(t_dy, a_dy[s]);
    store16(t_dyx, a_dyx[s]);
    store16(t_x, a_x[s]);
    for (int64_t l = 0; l < (kTail ? n : kLanes); ++l) {
      s_dy[qs + l] = t_dy[l];
      s_dyx[qs + l] = t_dyx[l];
      s_x[qs + l] = t_x[l];
    }
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
      const double* m = m0 + sg.l0;
      const T* kl = kEval ? k + sg.l0 : nullptr;
      int64_t q = 0;
      for (; q + kWalkStrips * kLanes <= sg.len; q += kWalkStrips * kLanes)
        backward_strips<kWalkStrips, kEval, kRelu, false>(a, sg, q, kLanes, m, kl, s_dy, s_dyx, s_x, mask);
      for (; q + kLanes <= sg.len; q += kLanes)
        backward_strips<1, kEval, kRelu, false>(a, sg, q, kLanes, m, kl, s_dy, s_dyx, s_x, mask);
      if (q < sg.len)
        backward_strips<1, kEval, kRelu, true>(a, sg, q, sg.len - q, m, kl, s_dy, s_dyx, s_x, mask);
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
  const int64_t n = g.table_lanes();
  Scratch<T> hi(n), lo(n), c_dy(n), c_xc(n), c_0(n);
  g.for_lanes([&](int64_t l, int64_t c) {
    hi[l] = params[c].mean_hi;
    lo[l] = params[c].mean_lo;
    c_dy[l] = params[c].c_dy;
    c_xc[l] = params[c].c_xc;
    c_0[l] = params[c].c_0;
  }, n);
  // dx of value i (dy, x at i; mask bit `bit`) with parameter lane l; copies of what
  // they use (a streaming store may alias anything). dx may be dy, x or y: each value is
  // read before it is written.
  const uint16_t* bits = mask.data;
  const T *h = hi.data, *lw = lo.data, *k1 = c_dy.data, *k2 = c_xc.data, *k3 = c_0.data;
  const auto vec = [=](const T* dys, const T* xs, int64_t i, int64_t bit, int64_t l) {
    Vec16<T> d = load16(dys + i);
    if (kRelu) d = keep_bits16(bits_at(bits, bit), d);
    return (load16(k1 + l) * d + load16(k2 + l) * ((load16(xs + i) - load16(h + l)) - load16(lw + l))) +
           load16(k3 + l);
  };
  const auto one = [=](const T* dys, const T* xs, int64_t i, int64_t bit, int64_t l) {
    const T d = kRelu && !(bits_at(bits, bit) & 1) ? T(0) : dys[i];
    return (k1[l] * d + k2[l] * ((xs[i] - h[l]) - lw[l])) + k3[l];
  };
  if (kStream && g.flat(kRelu)) {
    parallel_for(g.items(), a.threads, [&](int64_t item) {
      const int64_t o = g.item_first(item);  // mask bit = flat index (Rows::flat)
      const T *dys = a.dy + o, *xs = a.x + o;
      stream_flat_run(
          a.dx + o, g.item_count(item), g.lanes, [=](int64_t i, int64_t l) { return vec(dys, xs, i, o + i, l); },
          [=](int64_t i, int64_t l) { return one(dys, xs, i, o + i, l); });
      stream_fence();
    });
    return;
  }
  parallel_for(g.items(), a.threads, [&](int64_t item) {
    g.for_each_segment(item, [&](int64_t o, int64_t len, int64_t l0, int64_t bit) {
      const T *dys = a.dy + o, *xs = a.x + o;
      write_run<kStream>(
          a.dx + o, len, [=](int64_t q) { return vec(dys, xs, q, bit + q, l0 + q); },
          [=](int64_t q) { return one(dys, xs, q, bit + q, l0 + q); });
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

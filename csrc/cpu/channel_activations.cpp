// PReLU and Maxout on the CPU, compiled once per instruction set (CMakeLists.txt).
// The formulas live in fastnn/channel_activation_math.h.
//
// Both view x as (outer, C, inner) (BnShape, ops/launch.h). Work is cut into tasks
// fixed by the shape; the thread count only decides who runs which task. The PReLU
// weight gradient is summed in float64 per task (16 lanes or per column, by the shape)
// and merged in a fixed order, so its bits do not depend on the thread count or the
// instruction set; everything else is elementwise.
#include <stdint.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/channel_activation_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// s in all 16 lanes.
template <class T>
inline Vec16<T> uniform16(T s) {
  return lanewise<T>([s](int) {
    typename Vec16<T>::Register r;
    for (int l = 0; l < Vec16<T>::kPerRegister; ++l) r[l] = s;
    return r;
  });
}

// -------------------------------------------------------------------------- PReLU

// x as a matrix of `outer` rows and L = C * inner columns; column j belongs to channel
// j / inner. A task is a block of R rows times a tile of up to kTileColumns columns.
constexpr int64_t kTileColumns = 2048;
constexpr int64_t kTaskValues = 65536;

struct Tiles {
  int64_t rows, C, inner, L, W, R, row_blocks, tiles;
  explicit Tiles(const BnShape& s)
      : rows(s.outer), C(s.channels), inner(s.inner), L(s.channels * s.inner),
        W(min64(L, kTileColumns)), R(kTaskValues / W > 0 ? kTaskValues / W : 1),
        row_blocks((rows + R - 1) / R), tiles((L + W - 1) / W) {}
  int64_t tasks() const { return row_blocks * tiles; }
  int64_t j0(int64_t tile) const { return tile * W; }
  int64_t j1(int64_t tile) const { return min64(L, (tile + 1) * W); }
  int64_t first_channel(int64_t tile) const { return j0(tile) / inner; }
  int64_t channels_in(int64_t tile) const { return (j1(tile) - 1) / inner - first_channel(tile) + 1; }
};

// Where a run of columns takes its weight: one channel's scalar (inner >= 16), or
// per column from the weights spread over the L columns (small inner, channels last).
template <class T>
struct ScalarWeight {
  static constexpr bool kOneChannel = true;  // the run is one channel's
  T w;
  Vec16<T> v;
  explicit ScalarWeight(T s) : w(s), v(uniform16(s)) {}
  Vec16<T> vec(int64_t) const { return v; }
  T at(int64_t) const { return w; }
};
template <class T>
struct ColumnWeights {
  static constexpr bool kOneChannel = false;
  const T* w;  // at the run's first column
  Vec16<T> vec(int64_t q) const { return load16(w + q); }
  T at(int64_t q) const { return w[q]; }
};

// f(j, len, weights) over the runs of columns [j0, j1) that share a weight source.
template <class T, class F>
void for_weight_runs(const Tiles& g, const T* weight, const T* spread, int64_t j0, int64_t j1, F f) {
  if (spread) {
    f(j0, j1 - j0, ColumnWeights<T>{spread + j0});
    return;
  }
  for (int64_t j = j0; j < j1;) {
    const int64_t c = j / g.inner, end = min64((c + 1) * g.inner, j1);
    f(j, end - j, ScalarWeight<T>(weight[c]));
    j = end;
  }
}

// The weights spread over the columns when inner < 16 (else null: runs are long enough).
template <class T>
struct SpreadWeights {
  Scratch<T> data;
  bool used;
  SpreadWeights(const Tiles& g, const T* weight) : data(g.inner < kLanes ? g.L : 1), used(g.inner < kLanes) {
    if (used)
      for (int64_t j = 0; j < g.L; ++j) data[j] = weight[j / g.inner];
  }
  const T* get() const { return used ? data.data : nullptr; }
};

template <class T>
Vec16<T> prelu_value16(const Vec16<T>& x, const Vec16<T>& w) {
  return lanewise<T>([&](int k) { return prelu_value(x.r[k], w.r[k]); });
}
template <class T>
Vec16<T> prelu_grad_x16(const Vec16<T>& dy, const Vec16<T>& x, const Vec16<T>& w) {
  return lanewise<T>([&](int k) { return prelu_grad_x(dy.r[k], x.r[k], w.r[k]); });
}
inline Vec16<double> prelu_grad_weight_term16(const Vec16<double>& dy, const Vec16<double>& x) {
  return lanewise<double>([&](int k) { return prelu_grad_weight_term(dy.r[k], x.r[k]); });
}

template <class T>
void prelu_forward(const PreluArgs<T>& a) {
  const Tiles g(a.shape);
  const SpreadWeights<T> spread(g, a.weight);
  parallel_for(g.tasks(), a.threads, [&](int64_t t) {
    const int64_t rb = t / g.tiles, tile = t % g.tiles;
    for_weight_runs(g, a.weight, spread.get(), g.j0(tile), g.j1(tile), [&](int64_t j, int64_t len, auto w) {
      for (int64_t r = rb * g.R; r < min64(g.rows, (rb + 1) * g.R); ++r) {
        const T* xs = a.x + r * g.L + j;
        T* ys = a.out + r * g.L + j;
        int64_t q = 0;
        for (; q + kLanes <= len; q += kLanes) store16(ys + q, prelu_value16(load16(xs + q), w.vec(q)));
        for (; q < len; ++q) ys[q] = prelu_value(xs[q], w.at(q));
      }
    });
  });
}

// dx, and per task and channel the float64 sum of prelu_grad_weight_term: a run of one
// channel sums into 16 lanes (column j in lane (j - run start) % 16) over the task's
// rows, reduced in a fixed tree; runs of per-column weights (small inner) sum per
// column over the rows, folded into channels in column order.
template <class T>
void prelu_backward(const PreluArgs<T>& a) {
  const Tiles g(a.shape);
  const SpreadWeights<T> spread(g, a.weight);
  Scratch<int64_t> offset(g.tiles + 1);  // a row block's partial sums: tile by tile, then channels
  offset[0] = 0;
  for (int64_t tile = 0; tile < g.tiles; ++tile) offset[tile + 1] = offset[tile] + g.channels_in(tile);
  const int64_t per_block = offset[g.tiles];
  Scratch<double> part(g.row_blocks * per_block);

  parallel_for(g.tasks(), a.threads, [&](int64_t t) {
    const int64_t rb = t / g.tiles, tile = t % g.tiles, j0 = g.j0(tile);
    const int64_t c0 = g.first_channel(tile);
    double* out = part.data + rb * per_block + offset[tile];  // channel c0 + i in out[i]
    for (int64_t i = 0; i < g.channels_in(tile); ++i) out[i] = 0;
    double acc[kTileColumns];  // per-column weights: column j0 + i in acc[i]
    if (spread.used) memset(acc, 0, sizeof(double) * (g.j1(tile) - j0));
    for_weight_runs(g, a.weight, spread.get(), j0, g.j1(tile), [&](int64_t j, int64_t len, auto w) {
      constexpr bool kOneChannel = decltype(w)::kOneChannel;
      Vec16<double> lanes = zeros16<double>();
      double* sums = acc + (j - j0);
      for (int64_t r = rb * g.R; r < min64(g.rows, (rb + 1) * g.R); ++r) {
        const T *dys = a.dy + r * g.L + j, *xs = a.x + r * g.L + j;
        T* dxs = a.out + r * g.L + j;
        int64_t q = 0;
        for (; q + kLanes <= len; q += kLanes) {
          const Vec16<double> term = prelu_grad_weight_term16(load16_f64(dys + q), load16_f64(xs + q));
          if (kOneChannel)
            lanes += term;
          else
            store16(sums + q, load16(sums + q) + term);
          store16(dxs + q, prelu_grad_x16(load16(dys + q), load16(xs + q), w.vec(q)));  // dx may be dy or x
        }
        if (kOneChannel && q < len)  // padding lanes: dy = x = 0 gives a 0 term
          lanes += prelu_grad_weight_term16(load_tail16_f64(dys + q, len - q), load_tail16_f64(xs + q, len - q));
        for (; q < len; ++q) {
          if (!kOneChannel) sums[q] += prelu_grad_weight_term(double(dys[q]), double(xs[q]));
          dxs[q] = prelu_grad_x(dys[q], xs[q], w.at(q));
        }
      }
      if (kOneChannel) out[j / g.inner - c0] = reduce_lanes(lanes);
    });
    if (spread.used)
      for (int64_t j = j0; j < g.j1(tile); ++j) out[j / g.inner - c0] += acc[j - j0];
  });

  for (int64_t c = 0; c < g.C; ++c) a.dweight[c] = 0;
  for (int64_t rb = 0; rb < g.row_blocks; ++rb)
    for (int64_t tile = 0; tile < g.tiles; ++tile) {
      const double* p = part.data + rb * per_block + offset[tile];
      for (int64_t i = 0; i < g.channels_in(tile); ++i) a.dweight[g.first_channel(tile) + i] += p[i];
    }
}

// ------------------------------------------------------------------------- Maxout

// x as (groups, pieces, inner) with groups = outer * C / pieces, y as (groups, inner):
// y[r, i] = max over k of x[r, k, i]. Wide (inner >= 16): a task is a block of groups
// times a tile of inner positions, vectors run along inner. Narrow (inner < 16, e.g.
// channels last): a task is a block of groups, 16 outputs at a time gather their pieces
// into vectors (and scatter dx back).
struct Groups {
  int64_t groups, pieces, inner, W, R, blocks, tiles;
  bool narrow;
  Groups(const BnShape& s, int64_t p)
      : groups(s.outer * (s.channels / p)), pieces(p), inner(s.inner), W(min64(inner, kTileColumns)),
        R(kTaskValues / (W * p) > 0 ? kTaskValues / (W * p) : 1), blocks(0), tiles((inner + W - 1) / W),
        narrow(inner < kLanes) {
    if (narrow) R = (R + kLanes - 1) / kLanes * kLanes;  // whole blocks of 16 groups
    blocks = (groups + R - 1) / R;
  }
  int64_t tasks() const { return blocks * tiles; }
  int64_t first_group(int64_t t) const { return t / tiles * R; }
  int64_t end_group(int64_t t) const { return min64(groups, first_group(t) + R); }
  // Wide: f(r, i0, len) for the groups and inner range of task t.
  template <class F> void for_task(int64_t t, F f) const {
    const int64_t i0 = (t % tiles) * W, len = min64(W, inner - i0);
    for (int64_t r = first_group(t); r < end_group(t); ++r) f(r, i0, len);
  }
};

// The maximum of a group's pieces at 16 (or 1) positions, and the index of the piece it
// came from (as T: exact, pieces <= 2**24). at(k) loads piece k; V is Vec16<T> or T.
template <class V>
struct Winner {
  V value, index;
};

template <class T, class At>
Winner<Vec16<T>> winner16(int64_t pieces, At at) {
  Winner<Vec16<T>> w{at(0), zeros16<T>()};
  for (int64_t k = 1; k < pieces; ++k) {
    const Vec16<T> v = at(k);
    const T kk = T(k);
    for (int r = 0; r < Vec16<T>::kRegisters; ++r) {
      const auto take = maxout_takes(v.r[r], w.value.r[r]);
      w.value.r[r] = take ? v.r[r] : w.value.r[r];
      w.index.r[r] = take ? kk : w.index.r[r];
    }
  }
  return w;
}

template <class T, class At>
Winner<T> winner1(int64_t pieces, At at) {
  Winner<T> w{at(0), T(0)};
  for (int64_t k = 1; k < pieces; ++k) {
    const T v = at(k);
    if (maxout_takes(v, w.value)) w = {v, T(k)};
  }
  return w;
}

// dy where index == k, else 0.
template <class T>
inline Vec16<T> routed16(const Vec16<T>& index, const Vec16<T>& dy, int64_t k) {
  const T kk = T(k);
  return lanewise<T>([&](int r) { return index.r[r] == kk ? dy.r[r] : T(0); });
}

// Narrow layout: output l of a block of 16 groups (l < 16 * inner) reads piece k at
// offset[l] + k * inner from the block's first input.
struct NarrowOffsets {
  int64_t offset[kLanes * kLanes];
  NarrowOffsets(int64_t pieces, int64_t inner) {
    for (int64_t l = 0; l < kLanes * inner; ++l) offset[l] = l / inner * pieces * inner + l % inner;
  }
};

// The 16 values base[o[l]] as a vector, and the inverse.
template <class T>
inline Vec16<T> gather16(const T* base, const int64_t* o) {
  T buf[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) buf[l] = base[o[l]];
  return load16(buf);
}
template <class T>
inline void scatter16(T* base, const int64_t* o, const Vec16<T>& v) {
  T buf[kLanes];
  store16(buf, v);
  for (int64_t l = 0; l < kLanes; ++l) base[o[l]] = buf[l];
}

// full(r) for each block of 16 whole groups of task t (r its first group), then
// tail(r) for the groups left over.
template <class Full, class Tail>
void narrow_task(const Groups& g, int64_t t, Full full, Tail tail) {
  int64_t r = g.first_group(t);
  for (; r + kLanes <= g.end_group(t); r += kLanes) full(r);
  for (; r < g.end_group(t); ++r) tail(r);
}

template <class T>
void maxout_forward(const MaxoutArgs<T>& a) {
  const Groups g(a.shape, a.pieces);
  const int64_t p = g.pieces, S = g.inner;
  if (g.narrow) {
    const NarrowOffsets off(p, S);
    parallel_for(g.tasks(), a.threads, [&](int64_t t) {
      narrow_task(g, t, [&](int64_t r) {
        const T* xs = a.x + r * p * S;
        T* ys = a.out + r * S;
        for (int64_t q = 0; q < kLanes * S; q += kLanes) {
          const int64_t* o = off.offset + q;
          store16(ys + q, winner16<T>(p, [&](int64_t k) { return gather16(xs + k * S, o); }).value);
        }
      }, [&](int64_t r) {
        for (int64_t i = 0; i < S; ++i)
          a.out[r * S + i] = winner1<T>(p, [&](int64_t k) { return a.x[(r * p + k) * S + i]; }).value;
      });
    });
    return;
  }
  parallel_for(g.tasks(), a.threads, [&](int64_t t) {
    g.for_task(t, [&](int64_t r, int64_t i0, int64_t len) {
      const T* xs = a.x + r * p * S + i0;
      T* ys = a.out + r * S + i0;
      int64_t i = 0;
      for (; i + kLanes <= len; i += kLanes)
        store16(ys + i, winner16<T>(p, [&](int64_t k) { return load16(xs + k * S + i); }).value);
      for (; i < len; ++i) ys[i] = winner1<T>(p, [&](int64_t k) { return xs[k * S + i]; }).value;
    });
  });
}

// dx = dy at the winner, 0 at the other pieces. Every piece of a position is read
// before any is written, so dx may be x.
template <class T>
void maxout_backward(const MaxoutArgs<T>& a) {
  const Groups g(a.shape, a.pieces);
  const int64_t p = g.pieces, S = g.inner;
  if (g.narrow) {
    const NarrowOffsets off(p, S);
    parallel_for(g.tasks(), a.threads, [&](int64_t t) {
      narrow_task(g, t, [&](int64_t r) {
        const T* xs = a.x + r * p * S;
        const T* dys = a.dy + r * S;
        T* dxs = a.out + r * p * S;
        for (int64_t q = 0; q < kLanes * S; q += kLanes) {
          const int64_t* o = off.offset + q;
          const Vec16<T> index = winner16<T>(p, [&](int64_t k) { return gather16(xs + k * S, o); }).index;
          const Vec16<T> dy = load16(dys + q);
          for (int64_t k = 0; k < p; ++k) scatter16(dxs + k * S, o, routed16(index, dy, k));
        }
      }, [&](int64_t r) {
        for (int64_t i = 0; i < S; ++i) {
          const T index = winner1<T>(p, [&](int64_t k) { return a.x[(r * p + k) * S + i]; }).index;
          for (int64_t k = 0; k < p; ++k) a.out[(r * p + k) * S + i] = index == T(k) ? a.dy[r * S + i] : T(0);
        }
      });
    });
    return;
  }
  parallel_for(g.tasks(), a.threads, [&](int64_t t) {
    g.for_task(t, [&](int64_t r, int64_t i0, int64_t len) {
      const T* xs = a.x + r * p * S + i0;
      const T* dys = a.dy + r * S + i0;
      T* dxs = a.out + r * p * S + i0;
      int64_t i = 0;
      for (; i + kLanes <= len; i += kLanes) {
        const Vec16<T> index = winner16<T>(p, [&](int64_t k) { return load16(xs + k * S + i); }).index;
        const Vec16<T> dy = load16(dys + i);
        for (int64_t k = 0; k < p; ++k) store16(dxs + k * S + i, routed16(index, dy, k));
      }
      for (; i < len; ++i) {
        const T index = winner1<T>(p, [&](int64_t k) { return xs[k * S + i]; }).index;
        for (int64_t k = 0; k < p; ++k) dxs[k * S + i] = index == T(k) ? dys[i] : T(0);
      }
    });
  });
}

template <class T> ChannelActivationKernels<T> channel_activation_kernels() {
  return {&prelu_forward<T>, &prelu_backward<T>, &maxout_forward<T>, &maxout_backward<T>};
}

}  // namespace

void fill_channel_activations(KernelTable& table) {
  table.channel_activations.f32 = channel_activation_kernels<float>();
  table.channel_activations.f64 = channel_activation_kernels<double>();
}

FASTNN_CPU_NAMESPACE_END

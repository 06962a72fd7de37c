// Multi-tensor optimizer steps: one call updates every parameter of a group. The
// group's elements are cut into fixed chunks (per tensor, kOptimChunk elements), the
// chunks run in parallel, and each chunk is one pass (after the optional scan of the
// gradients for inf and NaN): parameter, gradient and state are
// loaded once per 16 lanes, updated by the rule in fastnn/optim_math.h and stored once.
// Elementwise with IEEE +-*/ and sqrt only, so every thread count and SIMD level gives
// the same bits.
#include <stdint.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/optim_math.h"

FASTNN_CPU_NAMESPACE_BEGIN

// The vector forms of the math header's helpers (found by argument-dependent lookup).
template <class T>
inline Vec16<T> optim_div(const Vec16<T>& a, const Vec16<T>& b) {
  return lanewise<T>([&](int k) { return a.r[k] / b.r[k]; });
}
template <class T>
inline Vec16<T> optim_div(const Vec16<T>& a, T b) {
  return lanewise<T>([&](int k) { return a.r[k] / b; });
}
template <class T>
inline Vec16<T> optim_max(const Vec16<T>& a, const Vec16<T>& b) {
  return lanewise<T>([&](int k) { return (a.r[k] > b.r[k]) | (a.r[k] != a.r[k]) ? a.r[k] : b.r[k]; });
}
template <class T>
inline Vec16<T> optim_sqrt(const Vec16<T>& a) {
  return lanewise<T>([&](int k) {
    typedef typename Vec16<T>::Register R;
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) return R(_mm512_sqrt_ps(__m512(a.r[k])));
    else return R(_mm512_sqrt_pd(__m512d(a.r[k])));
#elif defined(__AVX__)
    if constexpr (sizeof(T) == 4) return R(_mm256_sqrt_ps(__m256(a.r[k])));
    else return R(_mm256_sqrt_pd(__m256d(a.r[k])));
#elif defined(__SSE2__)
    if constexpr (sizeof(T) == 4) return R(_mm_sqrt_ps(__m128(a.r[k])));
    else return R(_mm_sqrt_pd(__m128d(a.r[k])));
#else
    R r;
    for (int l = 0; l < Vec16<T>::kPerRegister; ++l) r[l] = fastnn::optim_sqrt(a.r[k][l]);
    return r;
#endif
  });
}

namespace {

constexpr int64_t kOptimChunk = int64_t(1) << 15;  // elements per task
// Below this many elements in all, one thread: waking a team costs more than the work.
constexpr int64_t kOptimParallelMin = int64_t(1) << 16;

// The group's chunks as tasks: task t is chunk t - first[i] of tensor i, where
// first[i] <= t < first[i + 1].
struct Chunks {
  Scratch<int64_t> first;
  int64_t count, elements = 0;
  Chunks(const int64_t* sizes, int64_t n) : first(n + 1), count(n) {
    first[0] = 0;
    for (int64_t i = 0; i < n; ++i) {
      first[i + 1] = first[i] + chunk_count(sizes[i], kOptimChunk);
      elements += sizes[i];
    }
  }
  int64_t tasks() { return first[count]; }
  int threads(int wanted) { return elements < kOptimParallelMin ? 1 : wanted; }
  // cut[0..team]: worker w's tasks are [cut[w], cut[w + 1]), each range holding about
  // elements / team elements. (Equal task counts are not equal work: a big tensor's
  // chunks are full and a small tensor's one chunk is short, so one worker could get
  // most of the big tensors: 61% of the elements with 200 tensors of mixed sizes.)
  void balanced_cuts(const int64_t* sizes, int team, int64_t* cut) {
    int w = 1;
    int64_t before = 0, t = 0;  // elements before task t
    cut[0] = 0;
    for (int64_t i = 0; i < count; ++i)
      for (int64_t c = 0; c < first[i + 1] - first[i]; ++c, ++t) {
        while (w < team && before * team >= elements * w) cut[w++] = t;
        before += chunk_length(c, sizes[i], kOptimChunk);
      }
    while (w <= team) cut[w++] = t;
  }
  // body(lo, hi) on each worker's range of tasks (balanced_cuts).
  template <class F>
  void parallel_balanced(const int64_t* sizes, int threads, const F& body) {
    const int team = workers(tasks(), threads);
    Scratch<int64_t> cut(team + 1);
    balanced_cuts(sizes, team, cut.data);
    parallel_ranges(team, team, [&](int64_t lo, int64_t hi, int) {
      for (int64_t w = lo; w < hi; ++w) body(cut[w], cut[w + 1]);
    });
  }
  // The tensor holding task t: the last i with first[i] <= t (empty tensors hold none).
  int64_t tensor_of(int64_t t) {
    int64_t lo = 0, hi = count - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (first[mid] <= t) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
  // body(i, o, n) for the chunks of tasks [lo, hi) in order: elements [o, o + n) of tensor i.
  template <class F>
  void each_chunk(int64_t lo, int64_t hi, const int64_t* sizes, const F& body) {
    if (lo >= hi) return;
    for (int64_t t = lo, i = tensor_of(t); t < hi; ++t) {
      while (first[i + 1] <= t) ++i;
      const int64_t c = t - first[i];
      body(i, c * kOptimChunk, chunk_length(c, sizes[i], kOptimChunk));
    }
  }
  // The same, last first.
  template <class F>
  void each_chunk_backwards(int64_t lo, int64_t hi, const int64_t* sizes, const F& body) {
    if (lo >= hi) return;
    for (int64_t t = hi - 1, i = tensor_of(t); t >= lo; --t) {
      while (first[i] > t) --i;
      const int64_t c = t - first[i];
      body(i, c * kOptimChunk, chunk_length(c, sizes[i], kOptimChunk));
    }
  }
};

template <class V, class T>
struct Lanes;
template <class T>
struct Lanes<Vec16<T>, T> {
  static Vec16<T> load(const T* p) { return load16(p); }
  static void store(T* p, const Vec16<T>& v) { store16(p, v); }
};
template <class T>
struct Lanes<T, T> {
  static T load(const T* p) { return *p; }
  static void store(T* p, T v) { *p = v; }
};

// body(V(), k) for the 16-lane blocks of [0, n), then for the scalar tail.
template <class T, class F>
FASTNN_RUN_LOOP inline void sweep(int64_t n, const F& body) {
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) body(Vec16<T>(), k);
  for (; k < n; ++k) body(T(), k);
}

// Elements [o, o + n) of tensor i.
template <class T>
void step_chunk(const OptimArgs<T>& a, const OptimScalars<T>& s, int64_t i, int64_t o, int64_t n) {
  T* p = a.param[i] + o;
  const T* g = a.grad[i] + o;
  auto at = [&](int k) { return a.state[k] ? a.state[k][i] + o : nullptr; };
  T* s0 = at(0);
  T* s1 = at(1);
  T* s2 = at(2);
  switch (a.hyper.rule) {
    case kOptimSgd: {
      const bool has_buf = a.has_state[i] != 0;
      sweep<T>(n, [&](auto zero, int64_t k) {
        typedef Lanes<decltype(zero), T> L;
        auto pk = L::load(p + k);
        auto buf = has_buf ? L::load(s0 + k) : zero;
        sgd_update(pk, L::load(g + k), buf, has_buf, s);
        L::store(p + k, pk);
        if (s.use_momentum) L::store(s0 + k, buf);
      });
      break;
    }
    case kOptimAdagrad: {
      const T neg_clr = T(a.coef[0][i]);
      sweep<T>(n, [&](auto zero, int64_t k) {
        typedef Lanes<decltype(zero), T> L;
        auto pk = L::load(p + k), sum = L::load(s0 + k);
        adagrad_update(pk, L::load(g + k), sum, neg_clr, s);
        L::store(p + k, pk);
        L::store(s0 + k, sum);
      });
      break;
    }
    case kOptimRmsprop:
      sweep<T>(n, [&](auto zero, int64_t k) {
        typedef Lanes<decltype(zero), T> L;
        auto pk = L::load(p + k), sq = L::load(s0 + k);
        auto ga = s.centered ? L::load(s1 + k) : zero;
        auto buf = s.use_momentum ? L::load(s2 + k) : zero;
        rmsprop_update(pk, L::load(g + k), sq, ga, buf, s);
        L::store(p + k, pk);
        L::store(s0 + k, sq);
        if (s.centered) L::store(s1 + k, ga);
        if (s.use_momentum) L::store(s2 + k, buf);
      });
      break;
    case kOptimAdam: {
      const T neg_step = T(a.coef[0][i]), bc2_sqrt = T(a.coef[1][i]);
      sweep<T>(n, [&](auto zero, int64_t k) {
        typedef Lanes<decltype(zero), T> L;
        auto pk = L::load(p + k), m = L::load(s0 + k), v = L::load(s1 + k);
        auto vmax = s.amsgrad ? L::load(s2 + k) : zero;
        adam_update(pk, L::load(g + k), m, v, vmax, neg_step, bc2_sqrt, s);
        L::store(p + k, pk);
        L::store(s0 + k, m);
        L::store(s1 + k, v);
        if (s.amsgrad) L::store(s2 + k, vmax);
      });
      break;
    }
    case kOptimAdadelta:
      sweep<T>(n, [&](auto zero, int64_t k) {
        typedef Lanes<decltype(zero), T> L;
        auto pk = L::load(p + k), sq = L::load(s0 + k), acc = L::load(s1 + k);
        adadelta_update(pk, L::load(g + k), sq, acc, s);
        L::store(p + k, pk);
        L::store(s0 + k, sq);
        L::store(s1 + k, acc);
      });
      break;
  }
}

// x * 0 is 0 for finite x and NaN for inf or NaN; the lanes' sum says if any was.
template <class T>
bool chunk_finite(const T* x, int64_t n) {
  Vec16<T> acc = zeros16<T>();
  T tail = 0;
  sweep<T>(n, [&](auto zero, int64_t k) {
    typedef Lanes<decltype(zero), T> L;
    if constexpr (sizeof(zero) == sizeof(T)) tail = tail + L::load(x + k) * T(0);
    else acc = acc + L::load(x + k) * T(0);
  });
  T lanes[kLanes];
  store16(lanes, acc);
  for (int64_t l = 0; l < kLanes; ++l) tail = tail + lanes[l];
  return tail == tail;
}

// The step in two passes over the same ranges of tasks: each worker scans the gradients
// of its range (when check_finite), and unless some element was inf or NaN each worker
// updates its range last-first, finding the gradient chunks scanned last still in cache.
// Returns false (nothing written) on a non-finite gradient.
template <class T>
bool optim_step(const OptimArgs<T>& a) {
  const OptimScalars<T> s = optim_scalars<T>(a.hyper);
  Chunks chunks(a.sizes, a.count);
  const int64_t tasks = chunks.tasks();
  if (tasks == 0) return true;
  const int threads = chunks.threads(a.threads);
  if (a.check_finite) {
    int bad = 0;
    chunks.parallel_balanced(a.sizes, threads, [&](int64_t lo, int64_t hi) {
      chunks.each_chunk(lo, hi, a.sizes, [&](int64_t i, int64_t o, int64_t n) {
        if (!__atomic_load_n(&bad, __ATOMIC_RELAXED) && !chunk_finite(a.grad[i] + o, n))
          __atomic_store_n(&bad, 1, __ATOMIC_RELAXED);
      });
    });
    if (bad) return false;
  }
  chunks.parallel_balanced(a.sizes, threads, [&](int64_t lo, int64_t hi) {
    chunks.each_chunk_backwards(lo, hi, a.sizes, [&](int64_t i, int64_t o, int64_t n) { step_chunk(a, s, i, o, n); });
  });
  return true;
}

template <class T>
bool optim_all_finite(const T* const* arrays, const int64_t* sizes, int64_t count, int threads) {
  Chunks chunks(sizes, count);
  int bad = 0;
  chunks.parallel_balanced(sizes, chunks.threads(threads), [&](int64_t lo, int64_t hi) {
    chunks.each_chunk(lo, hi, sizes, [&](int64_t i, int64_t o, int64_t n) {
      if (!__atomic_load_n(&bad, __ATOMIC_RELAXED) && !chunk_finite(arrays[i] + o, n))
        __atomic_store_n(&bad, 1, __ATOMIC_RELAXED);  // (once known, the rest is skipped)
    });
  });
  return !bad;
}

}  // namespace

void fill_optim(KernelTable& table) {
  table.optim.f32 = {&optim_step<float>, &optim_all_finite<float>};
  table.optim.f64 = {&optim_step<double>, &optim_all_finite<double>};
}

FASTNN_CPU_NAMESPACE_END

// Thread helpers for the CPU kernels. Work is always split into tasks fixed by the
// data's shape; the thread count only decides who runs which task, never what a task
// computes, so results are identical for any number of threads.
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastnn/config.h"

FASTNN_CPU_NAMESPACE_BEGIN

// n elements cut into tasks of `chunk` consecutive ones: how many tasks, and task t's
// length (the last may be short).
inline int64_t chunk_count(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }
inline int64_t chunk_length(int64_t t, int64_t n, int64_t chunk) {
  const int64_t rest = n - t * chunk;
  return rest < chunk ? rest : chunk;
}

// Runs body(t) for t in [0, n): contiguous ranges of tasks per thread.
template <class F>
inline void parallel_for(int64_t n, int threads, const F& body) {
#ifdef _OPENMP
  if (threads > 1 && n > 1) {
    const int team = static_cast<int>(n < threads ? n : threads);
#pragma omp parallel for schedule(static) num_threads(team)
    for (int64_t t = 0; t < n; ++t) body(t);
    return;
  }
#else
  (void)threads;
#endif
  for (int64_t t = 0; t < n; ++t) body(t);
}

// The number of workers parallel_for_workers runs n tasks on.
inline int workers(int64_t n, int threads) {
  return static_cast<int>(n < threads ? (n > 0 ? n : 1) : threads);
}

// body(t, w) for t in [0, n), w < workers(n, threads) the worker running it (for
// scratch space per worker).
template <class F>
inline void parallel_for_workers(int64_t n, int threads, const F& body) {
#ifdef _OPENMP
  if (threads > 1 && n > 1) {
#pragma omp parallel num_threads(workers(n, threads))
    {
      const int w = omp_get_thread_num();
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n; ++t) body(t, w);
    }
    return;
  }
#endif
  for (int64_t t = 0; t < n; ++t) body(t, 0);
}

// Heap scratch for per-task partial results (plain aligned_alloc: no std templates
// in code compiled per instruction set).
template <class T>
struct Scratch {
  T* data;
  // 64-byte aligned: T may hold vector registers.
  explicit Scratch(int64_t n)
      : data(static_cast<T*>(aligned_alloc(64, (sizeof(T) * (n > 0 ? n : 1) + 63) / 64 * 64))) {
    if (!data) throw std::bad_alloc();
  }
  ~Scratch() { free(data); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T& operator[](int64_t i) { return data[i]; }
};

FASTNN_CPU_NAMESPACE_END

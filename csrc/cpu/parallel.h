// Thread helpers for the CPU kernels. Work is always split into tasks fixed by the
// data's shape; the thread count only decides who runs which task, never what a task
// computes, so results are identical for any number of threads.
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <new>

#include "cpu/thread_pool.h"
#include "fastnn/config.h"

FASTNN_CPU_NAMESPACE_BEGIN

// n elements cut into tasks of `chunk` consecutive ones: how many tasks, and task t's
// length (the last may be short).
inline int64_t chunk_count(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }
inline int64_t chunk_length(int64_t t, int64_t n, int64_t chunk) {
  const int64_t rest = n - t * chunk;
  return rest < chunk ? rest : chunk;
}

// The number of workers a pass of n tasks runs on.
inline int workers(int64_t n, int threads) {
  return static_cast<int>(n < threads ? (n > 0 ? n : 1) : threads);
}

// body(lo, hi, w) over contiguous ranges covering [0, n), one range per worker (team =
// workers(n, threads)); w < team names the thread running it, for scratch space. The
// ranges depend only on n and the team, and a late worker's range is run by another.
template <class F>
inline void parallel_ranges(int64_t n, int threads, const F& body) {
  const int team = workers(n, threads);
  if (team <= 1) {
    if (n > 0) body(int64_t(0), n, 0);
    return;
  }
  struct Job {
    const F* body;
    int64_t n;
    int team;
  } job{&body, n, team};
  run_blocks(team, team, [](void* ctx, int64_t b, int w) {
    const Job& j = *static_cast<const Job*>(ctx);
    (*j.body)(j.n * b / j.team, j.n * (b + 1) / j.team, w);
  }, &job);
}

// body(t) for t in [0, n).
template <class F>
inline void parallel_for(int64_t n, int threads, const F& body) {
  parallel_ranges(n, threads, [&body](int64_t lo, int64_t hi, int) {
    for (int64_t t = lo; t < hi; ++t) body(t);
  });
}

// body(t, w) for t in [0, n), w < workers(n, threads) the worker running it.
template <class F>
inline void parallel_for_workers(int64_t n, int threads, const F& body) {
  parallel_ranges(n, threads, [&body](int64_t lo, int64_t hi, int w) {
    for (int64_t t = lo; t < hi; ++t) body(t, w);
  });
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

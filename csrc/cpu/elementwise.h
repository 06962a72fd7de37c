// Elementwise maps for the CPU kernels: y[i] = f(a[i], b[i], ...) over fixed chunks,
// with the output streamed past the cache when the arrays don't fit in it.
#pragma once
#include <stdint.h>

#include "cpu/parallel.h"
#include "cpu/simd.h"

FASTNN_CPU_NAMESPACE_BEGIN

// Vectors per step: one vector's math is a long dependency chain (a polynomial is one
// fmadd after another), and independent chains keep the units busy. AVX-512 has 32 registers and one per Vec16<float>: 4 chains; narrower
// levels hold a Vec16 in 2 or 4 registers: 2 chains. The bits don't depend on it.
constexpr int kUnroll = kRegisterBytes == 64 ? 4 : 2;

// The main loops' stores: plain, or streaming past the cache (y aligned to a cache line).
struct PlainStore {
  template <class T> void operator()(T* p, const Vec16<T>& v) const { store16(p, v); }
};
struct StreamStore {
  template <class T> void operator()(T* p, const Vec16<T>& v) const { stream16(p, v); }
};

// A streamed task ends with a fence that waits for its stores: tasks of 2^18 values
// (1 MB of floats) ran a 64M-element pass faster than tasks of 128 KB.
constexpr int64_t kStreamTaskValues = int64_t(1) << 18;

// y[i] = f(src[i]...) for i < n, kUnroll vectors per step. A vector is stored only
// after it is loaded (y[i] from src[i]), so y may be one of the sources.
template <class Store, class T, class F, class... Src>
FASTNN_RUN_LOOP inline void map_unrolled(T* y, int64_t n, const F& f, const Src*... src) {
  int64_t i = 0;
  for (; i + kUnroll * kLanes <= n; i += kUnroll * kLanes) {
    if constexpr (std::is_same<Store, StreamStore>::value) {  // each vector stored as soon as it is made:
      // on huge pages, four loads then four streaming stores were 20% slower at 64M
      for (int u = 0; u < kUnroll; ++u) Store{}(y + i + u * kLanes, f(load16(src + i + u * kLanes)...));
      continue;
    }
    Vec16<T> v[kUnroll];
    for (int u = 0; u < kUnroll; ++u) v[u] = f(load16(src + i + u * kLanes)...);
    for (int u = 0; u < kUnroll; ++u) Store{}(y + i + u * kLanes, v[u]);
  }
  for (; i + kLanes <= n; i += kLanes) Store{}(y + i, f(load16(src + i)...));
  for (; i < n; ++i) y[i] = f(src[i]...);
}

// The same over chunks of `chunk` values, in parallel. With `stream`, each chunk's
// values before y's first cache line boundary are stored plainly, the rest streamed.
template <class T, class F, class... Src>
void map_chunks(T* y, int64_t n, int64_t chunk, bool stream, int threads, const F& f,
                const Src*... src) {
  if (stream && chunk < kStreamTaskValues) chunk = kStreamTaskValues;
  parallel_for(chunk_count(n, chunk), threads, [&](int64_t t) {
    const int64_t o = t * chunk, len = chunk_length(t, n, chunk);
    const int64_t head = stream ? values_to_alignment(y + o) : -1;
    if (head < 0 || head >= len) return map_unrolled<PlainStore>(y + o, len, f, (src + o)...);
    map_unrolled<PlainStore>(y + o, head, f, (src + o)...);
    map_unrolled<StreamStore>(y + o + head, len - head, f, (src + o + head)...);
    stream_fence();
  });
}

FASTNN_CPU_NAMESPACE_END

// Streaming loops that set the memory floor the benchmarks compare against: the
// least time any kernel that reads and writes the same arrays can take. Compiled per
// instruction set like the kernels they are compared with.
#include <stdint.h>
#include <string.h>

#include "cpu/elementwise.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kStreamChunk = int64_t(1) << 16;  // floats per task

// dst = src, out of place; past the cache's size, as floats with streaming stores
// (the least traffic a copy can make).
void stream_copy(const void* src, void* dst, int64_t bytes, int threads) {
  const int64_t n = bytes / 4;
  if (streaming_pays(2 * bytes)) {
    map_chunks(static_cast<float*>(dst), n, kStreamChunk, true, threads,
               [](const auto& v) { return v; }, static_cast<const float*>(src));
  } else {
    parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
      const int64_t o = t * kStreamChunk;
      memcpy(static_cast<float*>(dst) + o, static_cast<const float*>(src) + o,
             sizeof(float) * chunk_length(t, n, kStreamChunk));
    });
  }
  if (bytes % 4) memcpy(static_cast<char*>(dst) + 4 * n, static_cast<const char*>(src) + 4 * n, bytes % 4);
}

// Reads n floats, writes nothing (returns their sum so the reads can't be dropped).
double stream_read(const float* src, int64_t n, int threads) {
  Scratch<double> part(chunk_count(n, kStreamChunk));
  parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
    part[t] = lane_sum(src + t * kStreamChunk, chunk_length(t, n, kStreamChunk), [](auto v) { return v; });
  });
  double total = 0;
  for (int64_t t = 0; t < chunk_count(n, kStreamChunk); ++t) total += part[t];
  return total;
}

// out = a + b: two streams read, one written (streamed past the cache's size).
void stream_add(const float* a, const float* b, float* out, int64_t n, int threads) {
  map_chunks(out, n, kStreamChunk, streaming_pays(12 * n), threads,
             [](const auto& u, const auto& v) { return u + v; }, a, b);
}

// Reads and writes k arrays of n floats in place (a[i] *= factor).
void stream_scale_inplace(float* const* arrays, int64_t k, int64_t n, float factor, int threads) {
  parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
    const int64_t o = t * kStreamChunk, len = chunk_length(t, n, kStreamChunk);
    for (int64_t a = 0; a < k; ++a)
      map16(arrays[a] + o, arrays[a] + o, len, [factor](auto v) { return v * factor; });
  });
}

// The traffic of an optimizer step: src read once, k arrays read and written once,
// all in one pass (a[i] += src[i]).
void stream_update_inplace(const float* src, float* const* arrays, int64_t k, int64_t n, int threads) {
  parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
    const int64_t o = t * kStreamChunk, len = chunk_length(t, n, kStreamChunk);
    int64_t i = o;
    for (; i + kLanes <= o + len; i += kLanes) {
      const Vec16<float> s = load16(src + i);
      for (int64_t a = 0; a < k; ++a) store16(arrays[a] + i, load16(arrays[a] + i) + s);
    }
    for (; i < o + len; ++i)
      for (int64_t a = 0; a < k; ++a) arrays[a][i] += src[i];
  });
}

}  // namespace

void fill_stream(KernelTable& table) {
  table.stream = {&stream_copy, &stream_read, &stream_add, &stream_scale_inplace,
                  &stream_update_inplace};
}

FASTNN_CPU_NAMESPACE_END

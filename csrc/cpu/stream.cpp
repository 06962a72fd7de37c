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

// Whether the w arrays sit at the same offset from a register boundary (so one head
// loop aligns them all).
inline bool same_alignment(float* const* arrays, int64_t w) {
  if (w == 0 || values_to_alignment(arrays[0]) < 0) return false;
  for (int64_t a = 1; a < w; ++a)
    if ((reinterpret_cast<uintptr_t>(arrays[a]) - reinterpret_cast<uintptr_t>(arrays[0])) % kRegisterBytes)
      return false;
  return true;
}

// One pass over n floats with any traffic pattern: s = the sum of the `r` read arrays;
// each of the `k` in-place arrays gets a += s (read and written), each of the `w`
// written arrays gets s (written only, out of place; streamed past the cache's size,
// as the kernels do, when they share an alignment).
void stream_pass(const float* const* reads, int64_t r, float* const* writes, int64_t w,
                 float* const* inplace, int64_t k, int64_t n, int threads) {
  const auto span = [&](auto store, int64_t i, int64_t end) {
    for (; i + kLanes <= end; i += kLanes) {
      Vec16<float> s = zeros16<float>();
      for (int64_t a = 0; a < r; ++a) s += load16(reads[a] + i);
      for (int64_t a = 0; a < k; ++a) store16(inplace[a] + i, load16(inplace[a] + i) + s);
      for (int64_t a = 0; a < w; ++a) store(writes[a] + i, s);
    }
    for (; i < end; ++i) {
      float s = 0;
      for (int64_t a = 0; a < r; ++a) s += reads[a][i];
      for (int64_t a = 0; a < k; ++a) inplace[a][i] += s;
      for (int64_t a = 0; a < w; ++a) writes[a][i] = s;
    }
  };
  const bool stream = streaming_pays(4 * n * (r + w + 2 * k)) && same_alignment(writes, w);
  parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
    const int64_t o = t * kStreamChunk, end = o + chunk_length(t, n, kStreamChunk);
    const int64_t head = stream ? values_to_alignment(writes[0] + o) : -1;
    if (head < 0 || o + head >= end) return span(PlainStore{}, o, end);
    span(PlainStore{}, o, o + head);
    span(StreamStore{}, o + head, end);
    stream_fence();
  });
}

}  // namespace

void fill_stream(KernelTable& table) {
  table.stream = {&stream_copy, &stream_read, &stream_pass};
}

FASTNN_CPU_NAMESPACE_END

// Streaming loops that set the memory floor the benchmarks compare against: the
// least time any kernel that reads and writes the same arrays can take. A kernel
// measured faster than its floor means these loops are slow, so they do what the
// fastest kernels do: the same threads and chunks, several vectors in flight per step,
// and outputs past the cache's size streamed (no read for ownership). Compiled per
// instruction set like the kernels they are compared with.
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "cpu/elementwise.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kStreamChunk = int64_t(1) << 18;  // floats per task (see map_chunks)
// Floats per step of a pass: four lines of every array in turn, summed into a buffer
// that stays in L1. The arrays' streams advance together, as in the kernels, which
// interleave their arrays vector by vector (longer blocks measured slower).
constexpr int64_t kBlock = 64;

constexpr auto kSame = [](const auto& v) { return v; };
constexpr auto kAdd = [](const auto& a, const auto& b) { return a + b; };

// A streamed pass's copy of each vector: one operation between the load and the
// streaming store (an OR of its bits with a 0 the compiler cannot see, so any bytes
// copy exactly). 64M floats on 2 cores (huge pages, tasks of 1 MB): 10.7 ms this way,
// 12-14 ms with nothing in between, while kernels that do a little math per vector
// (ReLU, batch norm's eval) ran at 11-13 ms.
volatile uint32_t g_no_bits = 0;
inline auto paced_copy() {
  const uint32_t none = g_no_bits;
  return [none](const auto& v) {
    if constexpr (std::is_same<std::decay_t<decltype(v)>, float>::value) return v;  // a tail value
    else return from_bits(bits_of(v) | none);
  };
}

// dst = src, out of place; past the cache's size, as floats with streaming stores
// (the least traffic a copy can make).
void stream_copy(const void* src, void* dst, int64_t bytes, int threads) {
  const int64_t n = bytes / 4;
  if (streaming_pays(2 * bytes)) {
    map_chunks(static_cast<float*>(dst), n, kStreamChunk, true, threads, paced_copy(),
               static_cast<const float*>(src));
  } else {
    parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
      const int64_t o = t * kStreamChunk;
      memcpy(static_cast<float*>(dst) + o, static_cast<const float*>(src) + o,
             sizeof(float) * chunk_length(t, n, kStreamChunk));
    });
  }
  if (bytes % 4) memcpy(static_cast<char*>(dst) + 4 * n, static_cast<const char*>(src) + 4 * n, bytes % 4);
}

// The XOR of x[0, n): kUnroll independent lanes of integer work in flight (integers,
// so no word read, a denormal as float, costs a floating-point assist).
uint32_t xor_chunk(const uint32_t* x, int64_t n) {
  Vec16<uint32_t> acc[kUnroll];
  for (int u = 0; u < kUnroll; ++u) acc[u] = zeros16<uint32_t>();
  int64_t i = 0;
  for (; i + kUnroll * kLanes <= n; i += kUnroll * kLanes)
    for (int u = 0; u < kUnroll; ++u) acc[u] ^= load16(x + i + u * kLanes);
  for (int u = 1; u < kUnroll; ++u) acc[0] ^= acc[u];
  uint32_t lanes[kLanes], word = 0;
  store16(lanes, acc[0]);
  for (int64_t l = 0; l < kLanes; ++l) word ^= lanes[l];
  for (; i < n; ++i) word ^= x[i];
  return word;
}

// Reads n 32-bit words, writes nothing; returns their XOR, so the reads can't be dropped.
double stream_read(const float* src, int64_t n, int threads) {
  const uint32_t* words = reinterpret_cast<const uint32_t*>(src);
  Scratch<uint32_t> part(chunk_count(n, kStreamChunk));
  parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
    part[t] = xor_chunk(words + t * kStreamChunk, chunk_length(t, n, kStreamChunk));
  });
  uint32_t word = 0;
  for (int64_t t = 0; t < chunk_count(n, kStreamChunk); ++t) word ^= part[t];
  return word;
}

// Whether the w arrays sit at the same offset from a cache line (so one head loop
// aligns them all).
inline bool same_alignment(float* const* arrays, int64_t w) {
  if (w == 0 || values_to_alignment(arrays[0]) < 0) return false;
  for (int64_t a = 1; a < w; ++a)
    if ((reinterpret_cast<uintptr_t>(arrays[a]) - reinterpret_cast<uintptr_t>(arrays[0])) % kCacheLineBytes)
      return false;
  return true;
}

// stream_pass over [o, end), block by block; the written arrays' vectors stored by
// Store (streamed: the writes aligned at o, and kBlock keeps them aligned).
template <class Store>
void pass_span(const float* const* reads, int64_t r, float* const* writes, int64_t w,
               float* const* inplace, int64_t k, int64_t o, int64_t end) {
  alignas(64) float s[kBlock];
  for (int64_t b = o; b < end; b += kBlock) {
    const int64_t len = end - b < kBlock ? end - b : kBlock;
    if (r == 0) memset(s, 0, sizeof(float) * len);
    else map_unrolled<PlainStore>(s, len, kSame, reads[0] + b);
    for (int64_t a = 1; a < r; ++a) map_unrolled<PlainStore>(s, len, kAdd, +s, reads[a] + b);
    for (int64_t a = 0; a < k; ++a)
      map_unrolled<PlainStore>(inplace[a] + b, len, kAdd, +inplace[a] + b, +s);
    for (int64_t a = 0; a < w; ++a) map_unrolled<Store>(writes[a] + b, len, kSame, +s);
  }
}

// One pass over n floats with any traffic pattern: s = the sum of the `r` read arrays;
// each of the `k` in-place arrays gets a += s (read and written), each of the `w`
// written arrays gets s (written only, out of place; streamed past the cache's size,
// as the kernels do, when they share an alignment).
void stream_pass(const float* const* reads, int64_t r, float* const* writes, int64_t w,
                 float* const* inplace, int64_t k, int64_t n, int threads) {
  if (k == 0 && w == 1 && r >= 1 && r <= 3) {
    // y = f(a, ...), the elementwise kernels' pattern: their own loop (map_chunks, the
    // same vector interleaving of the arrays and the same stores) with the least math.
    float* y = writes[0];
    const bool streamed = streaming_pays(4 * n * (r + 1));
    if (r == 1) return map_chunks(y, n, kStreamChunk, streamed, threads, paced_copy(), reads[0]);
    if (r == 2) return map_chunks(y, n, kStreamChunk, streamed, threads, kAdd, reads[0], reads[1]);
    return map_chunks(y, n, kStreamChunk, streamed, threads,
                      [](const auto& a, const auto& b, const auto& c) { return a + b + c; }, reads[0], reads[1],
                      reads[2]);
  }
  const bool stream = streaming_pays(4 * n * (r + w + 2 * k)) && same_alignment(writes, w);
  parallel_for(chunk_count(n, kStreamChunk), threads, [&](int64_t t) {
    const int64_t o = t * kStreamChunk, end = o + chunk_length(t, n, kStreamChunk);
    const int64_t head = stream ? values_to_alignment(writes[0] + o) : -1;
    if (head < 0 || o + head >= end) return pass_span<PlainStore>(reads, r, writes, w, inplace, k, o, end);
    pass_span<PlainStore>(reads, r, writes, w, inplace, k, o, o + head);
    pass_span<StreamStore>(reads, r, writes, w, inplace, k, o + head, end);
    stream_fence();
  });
}

}  // namespace

void fill_stream(KernelTable& table) {
  table.stream = {&stream_copy, &stream_read, &stream_pass};
}

FASTNN_CPU_NAMESPACE_END

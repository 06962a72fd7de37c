// The memory-floor loops the benchmarks compare against, for every backend: the
// kernels a backend provides and the checks a call passes first (ops/stream.cpp).
#pragma once
#include <stdint.h>

#include <vector>  // declarations of the checks only: nothing instantiated in the kernels

namespace fastnn {

struct StreamKernels {
  void (*copy)(const void* src, void* dst, int64_t bytes, int threads);
  double (*read)(const float* src, int64_t n, int threads);               // XOR of the words, read only
  // r arrays read, w written out of place, k read and written in place, one pass
  void (*pass)(const float* const* reads, int64_t r, float* const* writes, int64_t w,
               float* const* inplace, int64_t k, int64_t n, int threads);
};

namespace ops {

struct Array;

// stream_copy(src, dst): any dtypes, the same number of bytes, dst writeable.
void check_stream_copy(const Array& src, const Array& dst);
// stream_read(src): float32.
void check_stream_read(const Array& src);
// stream_pass(reads, writes, inplace): float32 arrays of one size; returns the size.
int64_t check_stream_pass(const std::vector<Array>& reads, const std::vector<Array>& writes,
                          const std::vector<Array>& inplace);

}  // namespace ops
}  // namespace fastnn

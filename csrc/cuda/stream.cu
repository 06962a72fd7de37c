// The memory floor on the GPU, for the benchmarks: one pass over float32 arrays with a
// given pattern of reads and writes (the copy floor is cudaMemcpyAsync, in the binding).
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kMaxArrays = 8;

struct Streams {
  const float* reads[kMaxArrays];
  float* writes[kMaxArrays];
  float* inplace[kMaxArrays];
  int r, w, k;
};

__global__ void __launch_bounds__(kThreads) pass_kernel(Streams a, int64_t n, float* sink) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  float kept = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float s = 0;
    for (int j = 0; j < a.r; ++j) s += a.reads[j][i];
    for (int j = 0; j < a.k; ++j) a.inplace[j][i] += s;
    for (int j = 0; j < a.w; ++j) a.writes[j][i] = s;
    kept += s;
  }
  if (kept == 1.2345e-38f) *sink = kept;  // the loads stay live; never true in practice
}

}  // namespace

void stream_pass(const float* const* reads, int64_t r, float* const* writes, int64_t w, float* const* inplace,
                 int64_t k, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (r > kMaxArrays || w > kMaxArrays || k > kMaxArrays) throw Error("stream_pass: at most 8 arrays of each kind");
  Streams a{};
  for (int64_t j = 0; j < r; ++j) a.reads[j] = reads[j];
  for (int64_t j = 0; j < w; ++j) a.writes[j] = writes[j];
  for (int64_t j = 0; j < k; ++j) a.inplace[j] = inplace[j];
  a.r = int(r);
  a.w = int(w);
  a.k = int(k);
  float* sink = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&sink), sizeof(float), stream), "stream_pass workspace");
  pass_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, n, sink);
  cudaFreeAsync(sink, stream);
  check(cudaGetLastError(), "stream_pass");
}

}  // namespace cuda
}  // namespace fastnn

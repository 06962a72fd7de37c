// Dropout on the GPU with the CPU's mask rule (fastnn/dropout_math.h, fastnn/philox.h):
// the same (seed, offset, n, p) gives the same mask bits on both. A warp takes 128
// elements at a time: lane l runs Philox block (first element / 4) + l for its 4
// elements, and the even lanes store one mask byte each (their 4 bits and the next
// lane's). Elements are independent, so the grid's shape never changes a bit.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "fastnn/dropout_math.h"

namespace fastnn {
namespace cuda {
namespace {

constexpr int64_t kWarpElements = 128;

// Bit w: element e + w is kept (e a multiple of 4; bits past n are 0).
template <class T>
__device__ __forceinline__ uint32_t keep_bits(const DropoutArgs<T>& a, int64_t e, int lane) {
  uint32_t bits = 0;
  switch (a.source) {
    case MaskSource::generate: {
      const uint64_t b = uint64_t(e) / 4;
      uint32_t c[4] = {uint32_t(b), uint32_t(b >> 32), uint32_t(a.offset), uint32_t(a.offset >> 32)};
      philox4x32_10(c, uint32_t(a.seed), uint32_t(a.seed >> 32));
#pragma unroll
      for (int w = 0; w < 4; ++w) bits |= uint32_t(c[w] >= a.threshold) << w;
      break;
    }
    case MaskSource::load:
      if (e < a.n) bits = (a.mask_in[e / 8] >> (4 * (lane & 1))) & 0xFu;
      break;
    case MaskSource::keep_all:
      bits = 0xFu;
      break;
    case MaskSource::drop_all:
      break;
  }
  const int64_t valid = a.n - e;
  if (valid < 4) bits &= valid <= 0 ? 0u : (1u << valid) - 1;
  return bits;
}

template <class T>
__global__ void __launch_bounds__(kThreads) dropout_kernel(DropoutArgs<T> a, bool vec) {
  constexpr int N = Pack<T>::N;
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  const int64_t chunks = (a.n + kWarpElements - 1) / kWarpElements;
  for (int64_t q = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / 32; q < chunks; q += warps) {
    const int64_t e = q * kWarpElements + 4 * lane;
    const uint32_t bits = keep_bits(a, e, lane);
    if (a.mask_out) {  // every lane of the warp reaches the shuffle (q is the warp's)
      const uint32_t next = __shfl_down_sync(0xffffffffu, bits, 1);
      if ((lane & 1) == 0 && e < a.n) a.mask_out[e / 8] = uint8_t(bits | (next << 4));
    }
    if (!a.x) continue;
    // y = x * factor, factor = scale or 0: NaN and inf stay NaN, as on the CPU
    if (vec && e + 4 <= a.n) {
      Pack<T> p[4 / N];
#pragma unroll
      for (int h = 0; h < 4 / N; ++h) p[h] = reinterpret_cast<const Pack<T>*>(a.x + e)[h];
#pragma unroll
      for (int w = 0; w < 4; ++w) p[w / N].v[w % N] = p[w / N].v[w % N] * ((bits >> w & 1u) ? a.scale : T(0));
#pragma unroll
      for (int h = 0; h < 4 / N; ++h) reinterpret_cast<Pack<T>*>(a.y + e)[h] = p[h];
    } else {
      for (int w = 0; w < 4 && e + w < a.n; ++w) a.y[e + w] = a.x[e + w] * ((bits >> w & 1u) ? a.scale : T(0));
    }
  }
}

}  // namespace

template <class T>
void dropout(const DropoutArgs<T>& a, cudaStream_t stream) {
  if (a.n == 0 || (!a.x && !a.mask_out)) return;
  const int64_t chunks = (a.n + kWarpElements - 1) / kWarpElements;
  const bool vec = (!a.x || (aligned16(a.x) && aligned16(a.y)));
  dropout_kernel<<<blocks_for(chunks * 32), kThreads, 0, stream>>>(a, vec);
  check(cudaGetLastError(), "dropout");
}

template void dropout<float>(const DropoutArgs<float>&, cudaStream_t);
template void dropout<double>(const DropoutArgs<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace fastnn

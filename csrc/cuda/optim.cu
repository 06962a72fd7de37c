// Multi-tensor optimizer steps on the GPU: the rules are the CPU's (fastnn/optim_math.h,
// IEEE + - * / and sqrt only, no FMA contraction), so each element gets the CPU's bits.
// The group's tensors are cut into chunks of kChunk elements; a launch takes up to
// kTensors tensors and kBlocks chunks, with every pointer, size, flag and host scalar in
// its arguments (no table to copy to the device: a CUDA graph captures a launch whole).
// The non-finite check is a device byte: a scan clears it, the update reads it first.
#include <math.h>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "fastnn/optim_math.h"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kTensors = 24;          // per launch (the arguments stay under 4 KB)
constexpr int kBlocks = 256;          // chunks per launch
constexpr int64_t kChunk = 1 << 16;   // elements per chunk (one block)

template <class T>
struct Table {
  T* param[kTensors];
  const T* grad[kTensors];
  T* state[kOptimSlots][kTensors];
  int64_t size[kTensors];
  double coef[kOptimScalars][kTensors];        // host scalars
  const double* coef_device[kOptimScalars];    // or these, at index[slot], read on the device
  int64_t index[kTensors];                     // each slot's position in the group
  unsigned char has_state[kTensors];
  unsigned char tensor_of_block[kBlocks];
  int32_t chunk_of_block[kBlocks];
};

template <class T>
__device__ __forceinline__ T coef_of(const Table<T>& t, int k, int i) {
  return T(t.coef_device[k] ? t.coef_device[k][t.index[i]] : t.coef[k][i]);
}

template <class T>
__global__ void __launch_bounds__(kThreads) step_kernel(Table<T> tab, OptimScalars<T> s, int rule,
                                                       const unsigned char* finite) {
  if (finite && *finite == 0) return;  // a gradient held inf or NaN: write nothing
  const int i = tab.tensor_of_block[blockIdx.x];
  const int64_t lo = int64_t(tab.chunk_of_block[blockIdx.x]) * kChunk;
  const int64_t hi = lo + kChunk < tab.size[i] ? lo + kChunk : tab.size[i];
  T* p = tab.param[i];
  const T* g = tab.grad[i];
  T *s0 = tab.state[0][i], *s1 = tab.state[1][i], *s2 = tab.state[2][i];
  const T zero = T(0);
  switch (rule) {
    case kOptimSgd: {
      const bool has_buf = tab.has_state[i] != 0;
      for (int64_t k = lo + threadIdx.x; k < hi; k += kThreads) {
        T pk = p[k], buf = has_buf ? s0[k] : zero;
        sgd_update(pk, g[k], buf, has_buf, s);
        p[k] = pk;
        if (s.use_momentum) s0[k] = buf;
      }
      break;
    }
    case kOptimAdagrad: {
      const T neg_clr = coef_of(tab, 0, i);
      for (int64_t k = lo + threadIdx.x; k < hi; k += kThreads) {
        T pk = p[k], sum = s0[k];
        adagrad_update(pk, g[k], sum, neg_clr, s);
        p[k] = pk;
        s0[k] = sum;
      }
      break;
    }
    case kOptimRmsprop:
      for (int64_t k = lo + threadIdx.x; k < hi; k += kThreads) {
        T pk = p[k], sq = s0[k], ga = s.centered ? s1[k] : zero, buf = s.use_momentum ? s2[k] : zero;
        rmsprop_update(pk, g[k], sq, ga, buf, s);
        p[k] = pk;
        s0[k] = sq;
        if (s.centered) s1[k] = ga;
        if (s.use_momentum) s2[k] = buf;
      }
      break;
    case kOptimAdam: {
      const T neg_step = coef_of(tab, 0, i), bc2_sqrt = coef_of(tab, 1, i);
      for (int64_t k = lo + threadIdx.x; k < hi; k += kThreads) {
        T pk = p[k], m = s0[k], v = s1[k], vmax = s.amsgrad ? s2[k] : zero;
        adam_update(pk, g[k], m, v, vmax, neg_step, bc2_sqrt, s);
        p[k] = pk;
        s0[k] = m;
        s1[k] = v;
        if (s.amsgrad) s2[k] = vmax;
      }
      break;
    }
  }
}

// *finite = 0 if any element of the launch's arrays (in `grad`) is inf or NaN.
template <class T>
__global__ void __launch_bounds__(kThreads) scan_kernel(Table<T> tab, unsigned char* finite) {
  const int i = tab.tensor_of_block[blockIdx.x];
  const int64_t lo = int64_t(tab.chunk_of_block[blockIdx.x]) * kChunk;
  const int64_t hi = lo + kChunk < tab.size[i] ? lo + kChunk : tab.size[i];
  const T* g = tab.grad[i];
  bool ok = true;
  for (int64_t k = lo + threadIdx.x; k < hi; k += kThreads) ok &= isfinite(g[k]);
  if (__syncthreads_or(!ok) && threadIdx.x == 0) *finite = 0;
}

// Calls launch(table, blocks) for the chunks of every tensor with elements, in tables
// of at most kTensors tensors and kBlocks chunks; fill(table, slot, tensor) copies
// tensor's pointers and scalars into the table.
template <class T, class Fill, class Launch>
void for_tables(int64_t count, const int64_t* sizes, Fill fill, Launch launch) {
  Table<T> tab{};
  int tensors = 0, blocks = 0;
  auto flush = [&] {
    if (blocks) launch(tab, blocks);
    tensors = blocks = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    if (sizes[i] == 0) continue;
    const int64_t chunks = (sizes[i] + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      if (c == 0 || blocks == 0) {  // tensor i enters this table
        if (tensors == kTensors) flush();
        fill(tab, tensors, i);  // a tensor continued in a new table gets a slot there too
        tab.size[tensors] = sizes[i];
        tab.index[tensors] = i;
        ++tensors;
      }
      tab.tensor_of_block[blocks] = (unsigned char)(tensors - 1);
      tab.chunk_of_block[blocks] = int32_t(c);
      if (++blocks == kBlocks) flush();
    }
  }
  flush();
}

}  // namespace

template <class T>
void optim_step(const OptimLaunch<T>& a, cudaStream_t stream) {
  const OptimArgs<T>& args = a.args;
  if (a.scan) all_finite<T>(args.grad, args.sizes, args.count, a.finite, stream);
  const OptimScalars<T> s = optim_scalars<T>(args.hyper);
  for_tables<T>(
      args.count, args.sizes,
      [&](Table<T>& tab, int slot, int64_t i) {
        tab.param[slot] = args.param[i];
        tab.grad[slot] = args.grad[i];
        for (int k = 0; k < kOptimSlots; ++k) tab.state[k][slot] = args.state[k] ? args.state[k][i] : nullptr;
        for (int k = 0; k < kOptimScalars; ++k) {
          tab.coef[k][slot] = a.coef_host[k] ? a.coef_host[k][i] : 0.0;
          tab.coef_device[k] = a.coef_device[k];
        }
        tab.has_state[slot] = a.has_state ? a.has_state[i] : 0;
      },
      [&](const Table<T>& tab, int blocks) {
        step_kernel<T><<<blocks, kThreads, 0, stream>>>(tab, s, args.hyper.rule, a.finite);
      });
  check(cudaGetLastError(), "optim_step");
}

template <class T>
void all_finite(const T* const* arrays, const int64_t* sizes, int64_t count, unsigned char* finite,
                cudaStream_t stream) {
  for_tables<T>(
      count, sizes, [&](Table<T>& tab, int slot, int64_t i) { tab.grad[slot] = arrays[i]; },
      [&](const Table<T>& tab, int blocks) { scan_kernel<T><<<blocks, kThreads, 0, stream>>>(tab, finite); });
  check(cudaGetLastError(), "optim_all_finite");
}

#define FASTNN_INSTANTIATE(T)                                                                            \
  template void optim_step<T>(const OptimLaunch<T>&, cudaStream_t);                                    \
  template void all_finite<T>(const T* const*, const int64_t*, int64_t, unsigned char*, cudaStream_t);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)
#undef FASTNN_INSTANTIATE

}  // namespace cuda
}  // namespace fastnn

// Activations (forward and backward) and softmax cross-entropy on the GPU. The formulas
// are the CPU's (fastnn/activation_math.h), called per element; compiled without FMA
// contraction (-fmad=false), every element gets the CPU's bits. Grid-stride loops with
// 16-byte loads and stores where every pointer is aligned.
#include <math.h>

#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "fastnn/activation_math.h"

namespace fastnn {
namespace cuda {
namespace {

// y[i] = f(a[i]) or f(a[i], b[i]). y may be a or b: each element is loaded before it is
// stored, by the same thread.
template <class T, class F>
__global__ void __launch_bounds__(kThreads) map1(const T* a, T* y, int64_t n, F f, bool vec) {
  constexpr int N = Pack<T>::N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, t0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vec ? n / N : 0;
  for (int64_t v = t0; v < packs; v += stride) {
    Pack<T> p = reinterpret_cast<const Pack<T>*>(a)[v];
#pragma unroll
    for (int k = 0; k < N; ++k) p.v[k] = f(p.v[k]);
    reinterpret_cast<Pack<T>*>(y)[v] = p;
  }
  for (int64_t i = packs * N + t0; i < n; i += stride) y[i] = f(a[i]);
}

template <class T, class F>
__global__ void __launch_bounds__(kThreads) map2(const T* a, const T* b, T* y, int64_t n, F f, bool vec) {
  constexpr int N = Pack<T>::N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, t0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vec ? n / N : 0;
  for (int64_t v = t0; v < packs; v += stride) {
    Pack<T> p = reinterpret_cast<const Pack<T>*>(a)[v];
    const Pack<T> q = reinterpret_cast<const Pack<T>*>(b)[v];
#pragma unroll
    for (int k = 0; k < N; ++k) p.v[k] = f(p.v[k], q.v[k]);
    reinterpret_cast<Pack<T>*>(y)[v] = p;
  }
  for (int64_t i = packs * N + t0; i < n; i += stride) y[i] = f(a[i], b[i]);
}

template <class T, class F>
void launch1(const T* a, T* y, int64_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec = aligned16(a) && aligned16(y);
  map1<<<blocks_for(vec ? n / Pack<T>::N : n), kThreads, 0, stream>>>(a, y, n, f, vec);
}

template <class T, class F>
void launch2(const T* a, const T* b, T* y, int64_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec = aligned16(a) && aligned16(b) && aligned16(y);
  map2<<<blocks_for(vec ? n / Pack<T>::N : n), kThreads, 0, stream>>>(a, b, y, n, f, vec);
}

template <class Act> struct Forward {
  Act act;
  template <class T> __device__ __forceinline__ T operator()(T x) const { return act.forward(x); }
};
template <class Act> struct Backward {  // dy * f'(x), as the CPU computes it
  Act act;
  template <class T> __device__ __forceinline__ T operator()(T dy, T x) const { return dy * act.grad(x); }
};

struct Exp { template <class T> __device__ T operator()(T x) const { return vexp(x); } };
struct Expm1 { template <class T> __device__ T operator()(T x) const { return vexpm1(x); } };
struct Log1p { template <class T> __device__ T operator()(T x) const { return vlog1p(x); } };
struct TanhFn { template <class T> __device__ T operator()(T x) const { return vtanh(x); } };
struct Erf { template <class T> __device__ T operator()(T x) const { return verf(x); } };

// ------------------------------------------------------------------ softmax cross-entropy
// One warp per row: the row's maximum, exp(x - max) into probs, their sum in float64,
// probs scaled by 1 / sum, and the row's loss max + log(sum) - x[label] in float64.
// The mean over rows is a second kernel (one block, fixed order).
constexpr int kRowsPerBlock = kThreads / 32;

__device__ __forceinline__ int64_t label_at(const void* labels, int bytes, int64_t r) {
  return bytes == 4 ? int64_t(static_cast<const int32_t*>(labels)[r]) : static_cast<const int64_t*>(labels)[r];
}

__device__ __forceinline__ bool bad_label(int64_t label, int64_t classes) { return label < 0 || label >= classes; }

template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o /= 2) {
    const T u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;  // NaN is skipped here and comes back through exp(NaN - max)
  }
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {  // a fixed butterfly: every lane gets the same bits
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_rows(const T* logits, const void* labels, int label_bytes,
                                                        T* probs, double* row_loss, int64_t rows, int64_t classes) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;
  const T* x = logits + r * classes;
  T* p = probs + r * classes;
  // x[label] is read before the warp's shuffles, which no lane passes before all
  // arrive: only then are probs (which may be logits) written.
  const int64_t label = label_at(labels, label_bytes, r);
  const double label_logit = bad_label(label, classes) ? double(NAN) : double(x[label]);
  T m = T(-INFINITY);
  for (int64_t k = lane; k < classes; k += 32) m = x[k] > m ? x[k] : m;
  m = warp_max(m);
  double sum = 0;
  for (int64_t k = lane; k < classes; k += 32) {
    const T e = vexp(x[k] - m);
    p[k] = e;
    sum += double(e);
  }
  sum = warp_sum(sum);
  const T inv = T(1.0 / sum);
  for (int64_t k = lane; k < classes; k += 32) p[k] = p[k] * inv;
  if (lane == 0) row_loss[r] = (double(m) + log(sum)) - label_logit;
}

// loss = the mean of row_loss: each thread sums rows t, t + kThreads, ... in order, then a
// fixed tree.
template <class T>
__global__ void __launch_bounds__(kThreads) mean_rows(const double* row_loss, int64_t rows, T* loss) {
  __shared__ double sh[kThreads];
  const int t = threadIdx.x;
  double s = 0;
  for (int64_t r = t; r < rows; r += kThreads) s += row_loss[r];
  sh[t] = s;
  block_tree_sum(sh, t, kThreads, [](double& a, const double& b) { a += b; });
  if (t == 0) *loss = T(rows > 0 ? sh[0] / double(rows) : double(NAN));
}

// dlogits = (probs - onehot(label)) / rows; a bad label gives a NaN row.
template <class T>
__global__ void __launch_bounds__(kThreads) softmax_backward_rows(const T* probs, const void* labels, int label_bytes,
                                                                 T* dlogits, int64_t rows, int64_t classes) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;
  const T inv_rows = T(1.0 / double(rows));
  const int64_t label = label_at(labels, label_bytes, r);
  const bool bad = bad_label(label, classes);
  const T* p = probs + r * classes;
  T* d = dlogits + r * classes;
  for (int64_t k = lane; k < classes; k += 32) {
    const T v = p[k];  // each element is read and written by one lane: dlogits may be probs
    d[k] = bad ? T(NAN) : k == label ? (v - T(1)) * inv_rows : v * inv_rows;
  }
}

__global__ void bad_labels(const void* labels, int label_bytes, int64_t rows, int64_t classes,
                           unsigned long long* bad_row) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride)
    if (bad_label(label_at(labels, label_bytes, r), classes)) atomicMin(bad_row, static_cast<unsigned long long>(r));
}

unsigned row_blocks(int64_t rows) { return unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

template <class T>
void activation_forward(Activation op, ActivationParams p, const T* x, T* y, int64_t n, cudaStream_t stream) {
  with_activation<T>(op, p, [&](const auto& act) { launch1(x, y, n, Forward<std::decay_t<decltype(act)>>{act}, stream); });
  check(cudaGetLastError(), "activation forward");
}

template <class T>
void activation_backward(Activation op, ActivationParams p, const T* dy, const T* x, T* dx, int64_t n,
                         cudaStream_t stream) {
  with_activation<T>(op, p, [&](const auto& act) {
    launch2(dy, x, dx, n, Backward<std::decay_t<decltype(act)>>{act}, stream);
  });
  check(cudaGetLastError(), "activation backward");
}

template <class T>
void math_eval(MathFunction fn, const T* x, T* y, int64_t n, cudaStream_t stream) {
  switch (fn) {
    case MathFunction::exp: launch1(x, y, n, Exp{}, stream); break;
    case MathFunction::expm1: launch1(x, y, n, Expm1{}, stream); break;
    case MathFunction::log1p: launch1(x, y, n, Log1p{}, stream); break;
    case MathFunction::tanh: launch1(x, y, n, TanhFn{}, stream); break;
    case MathFunction::erf: launch1(x, y, n, Erf{}, stream); break;
    case MathFunction::count: break;
  }
  check(cudaGetLastError(), "math_eval");
}

template <class T>
void softmax_xent(const T* logits, const void* labels, int label_bytes, T* probs, T* loss, int64_t rows,
                  int64_t classes, cudaStream_t stream) {
  double* row_loss = nullptr;
  if (rows > 0) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&row_loss), size_t(rows) * sizeof(double), stream),
          "softmax_cross_entropy workspace");
    softmax_rows<<<row_blocks(rows), kThreads, 0, stream>>>(logits, labels, label_bytes, probs, row_loss, rows,
                                                            classes);
  }
  mean_rows<<<1, kThreads, 0, stream>>>(row_loss, rows, loss);
  if (row_loss) cudaFreeAsync(row_loss, stream);
  check(cudaGetLastError(), "softmax_cross_entropy");
}

template <class T>
void softmax_xent_backward(const T* probs, const void* labels, int label_bytes, T* dlogits, int64_t rows,
                           int64_t classes, cudaStream_t stream) {
  if (rows == 0) return;
  softmax_backward_rows<<<row_blocks(rows), kThreads, 0, stream>>>(probs, labels, label_bytes, dlogits, rows,
                                                                   classes);
  check(cudaGetLastError(), "softmax_cross_entropy_backward");
}

void find_bad_label(const void* labels, int label_bytes, int64_t rows, int64_t classes, int64_t* bad_row,
                    cudaStream_t stream) {
  if (rows == 0) return;
  bad_labels<<<blocks_for(rows), kThreads, 0, stream>>>(labels, label_bytes, rows, classes,
                                                        reinterpret_cast<unsigned long long*>(bad_row));
  check(cudaGetLastError(), "softmax_cross_entropy label check");
}

#define FASTNN_INSTANTIATE(T)                                                                               \
  template void activation_forward<T>(Activation, ActivationParams, const T*, T*, int64_t, cudaStream_t); \
  template void activation_backward<T>(Activation, ActivationParams, const T*, const T*, T*, int64_t,     \
                                       cudaStream_t);                                                     \
  template void math_eval<T>(MathFunction, const T*, T*, int64_t, cudaStream_t);                          \
  template void softmax_xent<T>(const T*, const void*, int, T*, T*, int64_t, int64_t, cudaStream_t);     \
  template void softmax_xent_backward<T>(const T*, const void*, int, T*, int64_t, int64_t, cudaStream_t);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)
#undef FASTNN_INSTANTIATE

}  // namespace cuda
}  // namespace fastnn

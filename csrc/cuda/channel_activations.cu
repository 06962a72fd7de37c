// PReLU and Maxout on the GPU; the formulas are fastnn/channel_activation_math.h's. x is
// viewed as (outer, C, inner) around its channel axis (a (1,) PReLU weight: (1, 1, n)).
// PReLU's weight gradient is summed per channel by pieces fixed by the shape
// (common.cuh) in float64, the pieces added in order.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/workspace.cuh"
#include "fastnn/channel_activation_math.h"

namespace fastnn {
namespace cuda {
namespace {

template <class T, bool kWide>
__global__ void __launch_bounds__(kThreads) prelu_kernel(const T* x, T* y, const T* w, int64_t n, ChannelOf ch) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = prelu_value(x[i], w[ch.C == 1 ? 0 : ch.template operator()<kWide>(i)]);
}

// The weight-gradient sum of a piece; each element's dx is written as it is visited
// (after its loads: dx may be dy or x).
template <class T>
struct PreluGradOp {
  struct Acc {
    double sum;
  };
  using Part = double;
  const T *dy, *x, *w;
  T* dx;
  __device__ static void add(Acc& a, const Acc& b) { a.sum += b.sum; }
  __device__ void load(Acc& a, int64_t i, int64_t c) const {
    const T g = dy[i], v = x[i];
    a.sum += prelu_grad_weight_term(double(g), double(v));
    dx[i] = prelu_grad_x(g, v, w[c]);
  }
  __device__ double piece(const Acc& a, int64_t, double) const { return a.sum; }
};

template <class T>
__global__ void prelu_weight_finish(const double* parts, int64_t pieces, int64_t C, T* dweight) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s = 0;
  for (int64_t j = 0; j < pieces; ++j) s += parts[c * pieces + j];
  dweight[c] = T(s);
}

// Output element j = (o, g, s) of (outer, C / pieces, inner): the maximum of x over the
// group's channels g * pieces ... g * pieces + pieces - 1, the first NaN or first
// maximum winning (maxout_takes).
struct Groups {
  int64_t outer, groups, inner, C, pieces;
  __device__ int64_t first(int64_t j) const {  // x's index of the group's piece 0
    const int64_t s = j % inner, t = j / inner;
    return ((t / groups) * C + (t % groups) * pieces) * inner + s;
  }
};

template <class T>
__global__ void __launch_bounds__(kThreads) maxout_kernel(const T* x, T* y, int64_t n_out, Groups g) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n_out; j += stride) {
    const T* p = x + g.first(j);
    T m = p[0];
    for (int64_t k = 1; k < g.pieces; ++k) {
      const T v = p[k * g.inner];
      if (maxout_takes(v, m)) m = v;
    }
    y[j] = m;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) maxout_backward_kernel(const T* dy, const T* x, T* dx, int64_t n_out,
                                                                  Groups g) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n_out; j += stride) {
    const int64_t o = g.first(j);
    T m = x[o];
    int64_t win = 0;
    for (int64_t k = 1; k < g.pieces; ++k) {
      const T v = x[o + k * g.inner];
      if (maxout_takes(v, m)) {
        m = v;
        win = k;
      }
    }
    const T d = dy[j];
    for (int64_t k = 0; k < g.pieces; ++k) dx[o + k * g.inner] = k == win ? d : T(0);  // x read first: dx may be x
  }
}

Groups groups_of(const BnShape& s, int64_t pieces) {
  return {s.outer, s.channels / pieces, s.inner, s.channels, pieces};
}

}  // namespace

template <class T>
void prelu_forward(const PreluArgs<T>& a, cudaStream_t stream) {
  const int64_t n = a.shape.outer * a.shape.channels * a.shape.inner;
  if (n == 0) return;
  const ChannelOf ch(a.shape);
  const bool wide = n >= kNarrowLimit || a.shape.channels >= kNarrowLimit;
  (wide ? prelu_kernel<T, true> : prelu_kernel<T, false>)<<<blocks_for(n), kThreads, 0, stream>>>(
      a.x, a.out, a.weight, n, ch);
  check(cudaGetLastError(), "prelu");
}

template <class T>
void prelu_backward(const PreluArgs<T>& a, T* dweight, cudaStream_t stream) {
  const int64_t C = a.shape.channels, n = a.shape.outer * C * a.shape.inner;
  if (C == 0) return;
  Pieces g(a.shape);
  if (n == 0) g.count = 0;  // dweight = 0
  Workspace ws(stream);
  double* parts;
  ws.reserve(parts, C * g.count);
  ws.allocate();
  if (n) channel_pieces<<<unsigned(g.blocks()), kThreads, 0, stream>>>(PreluGradOp<T>{a.dy, a.x, a.weight, a.out}, g, parts);
  prelu_weight_finish<<<unsigned((C + kThreads - 1) / kThreads), kThreads, 0, stream>>>(parts, g.count, C, dweight);
  check(cudaGetLastError(), "prelu_backward");
}

template <class T>
void maxout_forward(const MaxoutArgs<T>& a, cudaStream_t stream) {
  const Groups g = groups_of(a.shape, a.pieces);
  const int64_t n_out = g.outer * g.groups * g.inner;
  if (n_out == 0) return;
  maxout_kernel<<<blocks_for(n_out), kThreads, 0, stream>>>(a.x, a.out, n_out, g);
  check(cudaGetLastError(), "maxout");
}

template <class T>
void maxout_backward(const MaxoutArgs<T>& a, cudaStream_t stream) {
  const Groups g = groups_of(a.shape, a.pieces);
  const int64_t n_out = g.outer * g.groups * g.inner;
  if (n_out == 0) return;
  maxout_backward_kernel<<<blocks_for(n_out), kThreads, 0, stream>>>(a.dy, a.x, a.out, n_out, g);
  check(cudaGetLastError(), "maxout_backward");
}

#define FASTNN_INSTANTIATE(T)                                                     \
  template void prelu_forward<T>(const PreluArgs<T>&, cudaStream_t);             \
  template void prelu_backward<T>(const PreluArgs<T>&, T*, cudaStream_t);        \
  template void maxout_forward<T>(const MaxoutArgs<T>&, cudaStream_t);           \
  template void maxout_backward<T>(const MaxoutArgs<T>&, cudaStream_t);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)
#undef FASTNN_INSTANTIATE

}  // namespace cuda
}  // namespace fastnn

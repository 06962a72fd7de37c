// The window ops of Conv2d and the pooling layers on the GPU; window arithmetic from
// fastnn/spatial_math.h. One thread per output element (grid-stride, 64-bit indices);
// an element of a backward gathers what the CPU scatters, in the CPU's order and in
// float64, so the results are the CPU's bits. The bias gradient is summed per channel
// by one block in a fixed tree (its bits do not depend on the device, but differ from
// the CPU's order in the last place).
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "fastnn/spatial_math.h"

namespace fastnn {
namespace cuda {
namespace {

#define FASTNN_GRID_LOOP(e, n) \
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < (n); e += int64_t(gridDim.x) * blockDim.x)

// The window t along one axis whose element at a given kernel offset is a given input
// position: pos = position + padding - offset*dilation must be t*step with 0 <= t < n.
// Returns t, or -1 when there is no such window.
__device__ __forceinline__ int64_t window_at(int64_t pos, int64_t step, int64_t n) {
  if (pos < 0 || pos % step != 0) return -1;
  const int64_t t = pos / step;
  return t < n ? t : -1;
}

// f(i, j, p, q) for each window (p, q) whose kernel offset (i, j) reads input position
// (ih, iw), offsets in (i, j) order (the order the CPU adds them in).
template <class F>
__device__ __forceinline__ void for_windows_reading(int64_t ih, int64_t iw, const Window2d& g, F f) {
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t p = window_at(ih + g.ph - i * g.dh, g.sh, g.OH);
    if (p < 0) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t q = window_at(iw + g.pw - j * g.dw, g.sw, g.OW);
      if (q >= 0) f(i, j, p, q);
    }
  }
}

// cols element (row (c, i, j), column (n, p, q)).
template <class T>
__global__ void __launch_bounds__(kThreads) im2col_kernel(const T* x, T* cols, Window2d g, int64_t total) {
  const int64_t P = g.OH * g.OW, NP = g.N * P;
  FASTNN_GRID_LOOP(e, total) {
    const int64_t row = e / NP, col = e % NP;
    const int64_t c = row / (g.kh * g.kw), k = row % (g.kh * g.kw), n = col / P, pq = col % P;
    const int64_t ih = pq / g.OW * g.sh - g.ph + k / g.kw * g.dh;
    const int64_t iw = pq % g.OW * g.sw - g.pw + k % g.kw * g.dw;
    cols[e] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? x[((n * g.C + c) * g.H + ih) * g.W + iw] : T(0);
  }
}

// dx element (n, c, ih, iw): the cols entries of the windows that read it, kernel
// offsets (i, j) in order (the CPU's).
template <class T>
__global__ void __launch_bounds__(kThreads) col2im_kernel(const T* cols, T* dx, Window2d g, int64_t total) {
  const int64_t P = g.OH * g.OW, NP = g.N * P;
  FASTNN_GRID_LOOP(e, total) {
    const int64_t iw = e % g.W, ih = e / g.W % g.H, c = e / (g.H * g.W) % g.C, n = e / (g.C * g.H * g.W);
    double acc = 0;
    for_windows_reading(ih, iw, g, [&](int64_t i, int64_t j, int64_t p, int64_t q) {
      acc += double(cols[((c * g.kh + i) * g.kw + j) * NP + n * P + p * g.OW + q]);
    });
    dx[e] = T(acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) bias_output_kernel(const T* product, const T* bias, T* y, BnShape s,
                                                               int64_t total) {
  FASTNN_GRID_LOOP(e, total) {
    const int64_t p = e % s.inner, o = e / s.inner % s.channels, n = e / (s.inner * s.channels);
    const T v = product[(o * s.outer + n) * s.inner + p];
    y[e] = bias ? v + bias[o] : v;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) transpose_kernel(const T* dy, T* dproduct, BnShape s, int64_t total) {
  FASTNN_GRID_LOOP(e, total) {  // e: dproduct's element (o, n, p)
    const int64_t p = e % s.inner, n = e / s.inner % s.outer, o = e / (s.inner * s.outer);
    dproduct[e] = dy[(n * s.channels + o) * s.inner + p];
  }
}

// Block o: dbias[o], the float64 sum of channel o's N*P values by a fixed tree.
template <class T>
__global__ void __launch_bounds__(kThreads) bias_grad_kernel(const T* dy, T* dbias, BnShape s) {
  __shared__ double sh[kThreads];
  const int t = threadIdx.x;
  const int64_t o = blockIdx.x, m = s.outer * s.inner;
  double acc = 0;
  for (int64_t k = t; k < m; k += kThreads) acc += double(dy[(k / s.inner * s.channels + o) * s.inner + k % s.inner]);
  sh[t] = acc;
  block_tree_sum(sh, t, kThreads, [](double& a, double b) { a += b; });
  if (t == 0) dbias[o] = T(sh[0]);
}

// y element (n, c, p, q): the window's elements inside x in order, from -inf with the
// index of the first one (pool_max_takes).
template <class T, class I>
__global__ void __launch_bounds__(kThreads) max_pool_kernel(const T* x, T* y, I* index, Window2d g, int64_t total) {
  FASTNN_GRID_LOOP(e, total) {
    const int64_t q = e % g.OW, p = e / g.OW % g.OH, plane = e / (g.OH * g.OW);
    const T* src = x + plane * g.H * g.W;
    const int64_t top = p * g.sh - g.ph, left = q * g.sw - g.pw;
    const Span is = inside(top, g.dh, g.H, g.kh), js = inside(left, g.dw, g.W, g.kw);
    T best = T(-INFINITY);
    int64_t k = is.lo * g.kw + js.lo;
    for (int64_t i = is.lo; i < is.hi; ++i)
      for (int64_t j = js.lo; j < js.hi; ++j) {
        const T v = src[(top + i * g.dh) * g.W + left + j * g.dw];
        if (pool_max_takes(v, best)) {
          best = v;
          k = i * g.kw + j;
        }
      }
    y[e] = best;
    index[e] = I(k);
  }
}

// dx element (n, c, ih, iw): dy of the windows whose saved index is this element, in
// the windows' order (p, q) (the CPU's), i.e. kernel offsets from the last.
template <class T, class I>
__global__ void __launch_bounds__(kThreads) max_pool_backward_kernel(const T* dy, const I* index, T* dx, Window2d g,
                                                                     int64_t total) {
  FASTNN_GRID_LOOP(e, total) {
    const int64_t iw = e % g.W, ih = e / g.W % g.H, plane = e / (g.H * g.W);
    const int64_t base = plane * g.OH * g.OW;
    double acc = 0;
    for (int64_t i = g.kh - 1; i >= 0; --i) {
      const int64_t p = window_at(ih + g.ph - i * g.dh, g.sh, g.OH);
      if (p < 0) continue;
      for (int64_t j = g.kw - 1; j >= 0; --j) {
        const int64_t q = window_at(iw + g.pw - j * g.dw, g.sw, g.OW);
        if (q >= 0 && int64_t(index[base + p * g.OW + q]) == i * g.kw + j) acc += double(dy[base + p * g.OW + q]);
      }
    }
    dx[e] = T(acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) avg_pool_kernel(const T* x, T* y, Window2d g, int64_t total) {
  FASTNN_GRID_LOOP(e, total) {
    const int64_t q = e % g.OW, p = e / g.OW % g.OH, plane = e / (g.OH * g.OW);
    const T* src = x + plane * g.H * g.W;
    const int64_t top = p * g.sh - g.ph, left = q * g.sw - g.pw;
    const Span is = inside(top, g.dh, g.H, g.kh), js = inside(left, g.dw, g.W, g.kw);
    double acc = 0;
    for (int64_t i = is.lo; i < is.hi; ++i)
      for (int64_t j = js.lo; j < js.hi; ++j) acc += double(src[(top + i * g.dh) * g.W + left + j * g.dw]);
    y[e] = T(acc / double(g.kh * g.kw));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) avg_pool_backward_kernel(const T* dy, T* dx, Window2d g, int64_t total) {
  FASTNN_GRID_LOOP(e, total) {
    const int64_t iw = e % g.W, ih = e / g.W % g.H, plane = e / (g.H * g.W);
    const T* d = dy + plane * g.OH * g.OW;
    double acc = 0;
    for_windows_reading(ih, iw, g, [&](int64_t, int64_t, int64_t p, int64_t q) { acc += double(d[p * g.OW + q]); });
    dx[e] = T(acc / double(g.kh * g.kw));
  }
}

#undef FASTNN_GRID_LOOP

int64_t input_size(const Window2d& g) { return g.N * g.C * g.H * g.W; }
int64_t output_size(const Window2d& g) { return g.N * g.C * g.OH * g.OW; }

}  // namespace

template <class T>
void im2col(const T* x, T* cols, const Window2d& g, cudaStream_t stream) {
  const int64_t total = g.C * g.kh * g.kw * g.N * g.OH * g.OW;
  if (total == 0) return;
  im2col_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, cols, g, total);
  check(cudaGetLastError(), "im2col");
}

template <class T>
void col2im(const T* cols, T* dx, const Window2d& g, cudaStream_t stream) {
  const int64_t total = input_size(g);
  if (total == 0) return;
  col2im_kernel<<<blocks_for(total), kThreads, 0, stream>>>(cols, dx, g, total);
  check(cudaGetLastError(), "col2im");
}

template <class T>
void bias_output(const T* product, const T* bias, T* y, const BnShape& s, cudaStream_t stream) {
  const int64_t total = s.outer * s.channels * s.inner;
  if (total == 0) return;
  bias_output_kernel<<<blocks_for(total), kThreads, 0, stream>>>(product, bias, y, s, total);
  check(cudaGetLastError(), "bias_output");
}

template <class T>
void bias_output_backward(const T* dy, T* dproduct, T* dbias, const BnShape& s, cudaStream_t stream) {
  const int64_t total = s.outer * s.channels * s.inner;
  if (s.channels == 0) return;
  if (total > 0) transpose_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dy, dproduct, s, total);
  bias_grad_kernel<<<unsigned(s.channels), kThreads, 0, stream>>>(dy, dbias, s);
  check(cudaGetLastError(), "bias_output_backward");
}

template <class T>
void max_pool(const T* x, T* y, void* index, int index_bytes, const Window2d& g, cudaStream_t stream) {
  const int64_t total = output_size(g);
  if (total == 0) return;
  if (index_bytes == 1)
    max_pool_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, y, static_cast<uint8_t*>(index), g, total);
  else
    max_pool_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, y, static_cast<int32_t*>(index), g, total);
  check(cudaGetLastError(), "max_pool2d");
}

template <class T>
void max_pool_backward(const T* dy, const void* index, int index_bytes, T* dx, const Window2d& g,
                       cudaStream_t stream) {
  const int64_t total = input_size(g);
  if (total == 0) return;
  if (index_bytes == 1)
    max_pool_backward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(
        dy, static_cast<const uint8_t*>(index), dx, g, total);
  else
    max_pool_backward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(
        dy, static_cast<const int32_t*>(index), dx, g, total);
  check(cudaGetLastError(), "max_pool2d_backward");
}

template <class T>
void avg_pool(const T* x, T* y, const Window2d& g, cudaStream_t stream) {
  const int64_t total = output_size(g);
  if (total == 0) return;
  avg_pool_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, y, g, total);
  check(cudaGetLastError(), "avg_pool2d");
}

template <class T>
void avg_pool_backward(const T* dy, T* dx, const Window2d& g, cudaStream_t stream) {
  const int64_t total = input_size(g);
  if (total == 0) return;
  avg_pool_backward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dy, dx, g, total);
  check(cudaGetLastError(), "avg_pool2d_backward");
}

#define FASTNN_INSTANTIATE(T)                                                                          \
  template void im2col<T>(const T*, T*, const Window2d&, cudaStream_t);                               \
  template void col2im<T>(const T*, T*, const Window2d&, cudaStream_t);                               \
  template void bias_output<T>(const T*, const T*, T*, const BnShape&, cudaStream_t);                 \
  template void bias_output_backward<T>(const T*, T*, T*, const BnShape&, cudaStream_t);              \
  template void max_pool<T>(const T*, T*, void*, int, const Window2d&, cudaStream_t);                 \
  template void max_pool_backward<T>(const T*, const void*, int, T*, const Window2d&, cudaStream_t);  \
  template void avg_pool<T>(const T*, T*, const Window2d&, cudaStream_t);                             \
  template void avg_pool_backward<T>(const T*, T*, const Window2d&, cudaStream_t);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)
#undef FASTNN_INSTANTIATE

}  // namespace cuda
}  // namespace fastnn

// The window ops of Conv2d, MaxPool2d and AvgPool2d over NCHW arrays, for every
// backend: the geometry their kernels take, the kernels a backend provides, and the
// checks a call passes first (ops/spatial.cpp).
#pragma once
#include <stdint.h>

#include <vector>  // declarations of the checks only: nothing instantiated in the kernels

#include "ops/launch.h"

namespace fastnn {

// Windows over x (N, C, H, W): kh x kw elements, dh and dw apart, moved by sh and sw
// over x with ph and pw rows and columns of padding on each side; (OH, OW) windows per
// plane. Window (p, q)'s element (i, j) is x[ih, iw] with ih = p*sh - ph + i*dh and
// iw = q*sw - pw + j*dw, or padding when that lies outside x.
struct Window2d {
  int64_t N, C, H, W;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t OH, OW;
};

template <class T>
struct SpatialKernels {
  // cols (C*kh*kw, N*OH*OW): row (c, i, j), column (n, p, q) holds window (p, q)'s
  // element (i, j) of x's plane (n, c), 0 for padding.
  void (*im2col)(const T* x, T* cols, const Window2d& g, int threads);
  // dx (N, C, H, W): each element the sum of the cols entries im2col copied it to, in
  // kernel-offset order, accumulated in float64.
  void (*col2im)(const T* cols, T* dx, const Window2d& g, int threads);
  // y (N, O, P) = product (O, N*P) + bias (O,) (bias may be null). BnShape {N, O, P}.
  void (*bias_output)(const T* product, const T* bias, T* y, const BnShape& s, int threads);
  // dproduct (O, N*P) = dy (N, O, P) transposed; dbias (O,) = its sums over N*P in float64.
  void (*bias_output_backward)(const T* dy, T* dproduct, double* dbias, const BnShape& s, int threads);
  // y (N, C, OH, OW) the maximum of each window and index the offset i*kw + j of the
  // element it came from (uint8 when index_bytes is 1, else int32).
  void (*max_pool)(const T* x, T* y, void* index, int index_bytes, const Window2d& g, int threads);
  // dx (N, C, H, W): dy added at each window's saved index.
  void (*max_pool_backward)(const T* dy, const void* index, int index_bytes, T* dx, const Window2d& g,
                            int threads);
  // y (N, C, OH, OW): the mean of each window, padding counted as zeros.
  void (*avg_pool)(const T* x, T* y, const Window2d& g, int threads);
  // dx (N, C, H, W): each window's dy / (kh*kw) added over the window.
  void (*avg_pool_backward)(const T* dy, T* dx, const Window2d& g, int threads);
};
using SpatialTable = PerFloat<SpatialKernels>;

namespace ops {

struct Array;

// The hyper-parameters of a window op as the bindings read them (each a pair).
struct WindowParams {
  int64_t kernel[2], stride[2], padding[2], dilation[2];
};

// The geometry of windows over an input of shape `input` (4 values: N, C, H, W), named
// `what` in messages. ValueError for a kernel, stride or dilation < 1, a padding < 0,
// a pool's padding above half its kernel (`pool`), or an input (padded) smaller than
// the window.
Window2d window_geometry(const std::vector<int64_t>& input, const WindowParams& p, bool pool, const char* what);

// im2col(x (N, C, H, W)) -> cols (C*kh*kw, N*OH*OW).
Window2d check_im2col(const Array& x, const WindowParams& p, Array& cols);
// col2im(cols, input_shape) -> dx of input_shape.
Window2d check_col2im(const Array& cols, const std::vector<int64_t>& input_shape, const WindowParams& p,
                      Array& dx);
// bias_output(product (O, N*P), bias (O,) or absent, output_shape (N, O, *spatial)) -> y.
BnShape check_bias_output(const Array& product, const Array& bias, const std::vector<int64_t>& output_shape,
                          Array& y);
// bias_output_backward(dy (N, O, *spatial)) -> dproduct (O, N*P), dbias (O,).
BnShape check_bias_output_backward(const Array& dy, Array& dproduct, Array& dbias);
// max_pool2d(x) -> y (N, C, OH, OW), index (uint8 for windows of up to 256 elements,
// else int32; a given one may be int32 either way).
Window2d check_max_pool(const Array& x, const WindowParams& p, Array& y, Array& index);
// max_pool2d_backward(dy, index, input_shape) -> dx.
Window2d check_max_pool_backward(const Array& dy, const Array& index, const std::vector<int64_t>& input_shape,
                                 const WindowParams& p, Array& dx);
// avg_pool2d(x) -> y; avg_pool2d_backward(dy, input_shape) -> dx.
Window2d check_avg_pool(const Array& x, const WindowParams& p, Array& y);
Window2d check_avg_pool_backward(const Array& dy, const std::vector<int64_t>& input_shape, const WindowParams& p,
                                 Array& dx);

}  // namespace ops
}  // namespace fastnn

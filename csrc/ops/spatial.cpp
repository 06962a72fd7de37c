#include "ops/spatial.h"

#include <string>

#include "ops/array.h"
#include "ops/check.h"

namespace fastnn {
namespace ops {

namespace {

// a * b, or ValueError naming `what` when it passes 2**62 (no array is that large).
int64_t times(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > (int64_t(1) << 62))
    throw ValueError(std::string(what) + " describes more than 2**62 elements");
  return r;
}

std::string pair_str(const int64_t* v) { return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")"; }

// x is a float array of 4 dimensions, laid out for the kernels.
void require_nchw(const Array& x) {
  require_float(x);
  require_layout(x);
  if (x.ndim() != 4) throw ValueError(x.name + " must have shape (N, C, H, W), got " + shape_str(x.shape));
}

// A shape argument (not an array): 4 sizes >= 0 whose product fits.
void require_input_shape(const std::vector<int64_t>& shape) {
  if (shape.size() != 4)
    throw ValueError("input_shape must have 4 entries (N, C, H, W), got " + shape_str(shape));
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw ValueError("input_shape must hold sizes >= 0, got " + shape_str(shape));
    n = times(n, d, "input_shape");
  }
}

// index: uint8 (windows of up to 256 elements) or int32, C-contiguous, of y's shape.
void require_index(const Array& index, const Window2d& g, const Shape& shape, bool output) {
  const bool narrow_ok = g.kh * g.kw <= 256;
  if (index.dtype != DType::int32 && !(narrow_ok && index.dtype == DType::uint8))
    throw TypeError(index.name + " must have dtype " + (narrow_ok ? "uint8 or int32" : "int32") +
                    " (windows of " + std::to_string(g.kh * g.kw) + " elements), got " + index.dtype_name);
  require_layout(index);
  if (index.shape != shape)
    throw ValueError(index.name + " must have shape " + shape_str(shape) + ", got " + shape_str(index.shape));
  if (output) require_writeable(index);
}

Shape output_shape(const Window2d& g) { return {g.N, g.C, g.OH, g.OW}; }

// The CPU kernel keeps a window's running index as a float: exact up to 2**24.
void require_max_pool_window(const WindowParams& p) {
  if (p.kernel[0] * p.kernel[1] > (int64_t(1) << 24))
    throw ValueError("kernel_size " + pair_str(p.kernel) + " has more than 2**24 elements (max_pool2d's limit)");
}

}  // namespace

Window2d window_geometry(const std::vector<int64_t>& input, const WindowParams& p, bool pool, const char* what) {
  const char* names[4] = {"kernel_size", "stride", "padding", "dilation"};
  const int64_t* values[4] = {p.kernel, p.stride, p.padding, p.dilation};
  for (int a = 0; a < 4; ++a) {
    const int64_t lo = a == 2 ? 0 : 1;
    for (int d = 0; d < 2; ++d)
      if (values[a][d] < lo || values[a][d] > int64_t(INT32_MAX))
        throw ValueError(std::string(names[a]) + " must hold ints in [" + std::to_string(lo) + ", 2**31 - 1], got " +
                         pair_str(values[a]));
  }
  if (pool && (p.padding[0] > p.kernel[0] / 2 || p.padding[1] > p.kernel[1] / 2))
    throw ValueError("padding should be at most half of the kernel size, got padding=" + pair_str(p.padding) +
                     " and kernel_size=" + pair_str(p.kernel));
  Window2d g{input[0], input[1], input[2], input[3], p.kernel[0], p.kernel[1], p.stride[0], p.stride[1],
             p.padding[0], p.padding[1], p.dilation[0], p.dilation[1], 0, 0};
  const int64_t size[2] = {g.H, g.W};
  int64_t out[2];
  for (int d = 0; d < 2; ++d) {
    const int64_t span = p.dilation[d] * (p.kernel[d] - 1) + 1, padded = size[d] + 2 * p.padding[d];
    if (padded < span)
      throw ValueError(std::string(what) + "'s spatial size " + std::to_string(size[d]) + " (padded: " +
                       std::to_string(padded) + ") is smaller than the window's " + std::to_string(span));
    out[d] = (padded - span) / p.stride[d] + 1;
  }
  g.OH = out[0];
  g.OW = out[1];
  times(times(g.N, g.C, what), times(g.OH, g.OW, what), what);
  return g;
}

Window2d check_im2col(const Array& x, const WindowParams& p, Array& cols) {
  require_one_device({&x, &cols});
  require_nchw(x);
  const Window2d g = window_geometry(x.shape, p, false, "x");
  const int64_t rows = times(g.C, g.kh * g.kw, "cols"), columns = times(g.N, g.OH * g.OW, "cols");
  times(rows, columns, "cols");
  expect_output(cols, x, {rows, columns});
  require_no_overlap({&cols}, {&x, &cols});
  return g;
}

Window2d check_col2im(const Array& cols, const std::vector<int64_t>& input_shape, const WindowParams& p,
                      Array& dx) {
  require_one_device({&cols, &dx});
  require_float(cols);
  require_layout(cols);
  require_input_shape(input_shape);
  const Window2d g = window_geometry(input_shape, p, false, "input_shape");
  const Shape expected{times(g.C, g.kh * g.kw, "cols"), times(g.N, g.OH * g.OW, "cols")};
  if (cols.shape != expected)
    throw ValueError(cols.name + " must have shape " + shape_str(expected) + " (C*kh*kw, N*OH*OW), got " +
                     shape_str(cols.shape));
  expect_output(dx, cols, input_shape);
  require_no_overlap({&dx}, {&cols, &dx});
  return g;
}

BnShape check_bias_output(const Array& product, const Array& bias, const std::vector<int64_t>& output_shape,
                          Array& y) {
  require_one_device({&product, &bias, &y});
  require_float(product);
  require_layout(product);
  if (output_shape.size() < 2)
    throw ValueError("output_shape must have at least 2 entries (N, O, ...), got " + shape_str(output_shape));
  BnShape s{output_shape[0], output_shape[1], 1};
  for (size_t d = 0; d < output_shape.size(); ++d) {
    if (output_shape[d] < 0) throw ValueError("output_shape must hold sizes >= 0, got " + shape_str(output_shape));
    if (d >= 2) s.inner = times(s.inner, output_shape[d], "output_shape");
  }
  const Shape expected{s.channels, times(s.outer, s.inner, "output_shape")};
  times(expected[0], expected[1], "output_shape");
  if (product.shape != expected)
    throw ValueError(product.name + " must have shape " + shape_str(expected) + " (O, N*P) for output_shape " +
                     shape_str(output_shape) + ", got " + shape_str(product.shape));
  if (bias.given) require_like(bias, product, {s.channels});
  expect_output(y, product, output_shape);
  require_no_overlap({&y}, {&product, &bias, &y});
  return s;
}

BnShape check_bias_output_backward(const Array& dy, Array& dproduct, Array& dbias) {
  require_one_device({&dy, &dproduct, &dbias});
  require_float(dy);
  require_layout(dy);
  if (dy.ndim() < 2) throw ValueError(dy.name + " must have shape (N, O, ...), got " + shape_str(dy.shape));
  BnShape s{dy.shape[0], dy.shape[1], 1};
  for (int d = 2; d < dy.ndim(); ++d) s.inner *= dy.shape[d];
  expect_output(dproduct, dy, {s.channels, s.outer * s.inner});
  expect_output(dbias, dy, {s.channels});
  require_no_overlap({&dproduct, &dbias}, {&dy, &dproduct, &dbias});
  return s;
}

Window2d check_max_pool(const Array& x, const WindowParams& p, Array& y, Array& index) {
  require_one_device({&x, &y, &index});
  require_nchw(x);
  const Window2d g = window_geometry(x.shape, p, true, "x");
  require_max_pool_window(p);
  expect_output(y, x, output_shape(g));
  if (index.given) require_index(index, g, output_shape(g), true);
  else expect_output(index, g.kh * g.kw <= 256 ? DType::uint8 : DType::int32, output_shape(g));
  require_no_overlap({&y, &index}, {&x, &y, &index});
  return g;
}

Window2d check_max_pool_backward(const Array& dy, const Array& index, const std::vector<int64_t>& input_shape,
                                 const WindowParams& p, Array& dx) {
  require_one_device({&dy, &index, &dx});
  require_nchw(dy);
  require_input_shape(input_shape);
  const Window2d g = window_geometry(input_shape, p, true, "input_shape");
  require_max_pool_window(p);
  require_like(dy, dy, output_shape(g));
  require_index(index, g, output_shape(g), false);
  expect_output(dx, dy, input_shape);
  require_no_overlap({&dx}, {&dy, &index, &dx});
  return g;
}

Window2d check_avg_pool(const Array& x, const WindowParams& p, Array& y) {
  require_one_device({&x, &y});
  require_nchw(x);
  const Window2d g = window_geometry(x.shape, p, true, "x");
  expect_output(y, x, output_shape(g));
  require_no_overlap({&y}, {&x, &y});
  return g;
}

Window2d check_avg_pool_backward(const Array& dy, const std::vector<int64_t>& input_shape, const WindowParams& p,
                                 Array& dx) {
  require_one_device({&dy, &dx});
  require_nchw(dy);
  require_input_shape(input_shape);
  const Window2d g = window_geometry(input_shape, p, true, "input_shape");
  require_like(dy, dy, output_shape(g));
  expect_output(dx, dy, input_shape);
  require_no_overlap({&dx}, {&dy, &dx});
  return g;
}

}  // namespace ops
}  // namespace fastnn

// The window ops of Conv2d and the pooling layers in the _cpu module: arguments to
// views, the op's checks (ops/spatial.cpp), then the kernel with the GIL released.
#include "bindings/spatial_args.h"
#include "cpu/dispatch.h"
#include "ops/check.h"
#include "ops/spatial.h"

#include <vector>

namespace fastnn {
namespace bind {
namespace {

const SpatialTable& table() { return cpu::kernels().spatial; }

// f(T()) with the GIL released, unless there is nothing to compute.
template <class F>
void run(const Array& a, int64_t work, F f) {
  if (work > 0) without_gil([&] { ops::dispatch_float(a.dtype, f); });
}

py::object im2col(py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
                  py::handle dilation, py::handle cols_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, dilation);
  const Array x = view(x_obj, "x");
  Array cols = output_view(cols_obj, "out");
  const Window2d g = ops::check_im2col(x, p, cols);
  require_host("im2col", {&x, &cols});
  py::object res = result(cols_obj, cols);
  run(x, cols.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().im2col(x.ptr<const T>(), cols.ptr<T>(), g, cpu::num_threads());
  });
  return res;
}

py::object col2im(py::handle cols_obj, py::handle input_shape, py::handle kernel_size, py::handle stride,
                  py::handle padding, py::handle dilation, py::handle dx_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, dilation);
  const std::vector<int64_t> shape = shape_arg(input_shape, "input_shape");
  const Array cols = view(cols_obj, "cols");
  Array dx = output_view(dx_obj, "out");
  const Window2d g = ops::check_col2im(cols, shape, p, dx);
  require_host("col2im", {&cols, &dx});
  py::object res = result(dx_obj, dx);
  run(cols, dx.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().col2im(cols.ptr<const T>(), dx.ptr<T>(), g, cpu::num_threads());
  });
  return res;
}

py::object bias_output(py::handle product_obj, py::handle bias_obj, py::handle output_shape, py::handle y_obj) {
  const std::vector<int64_t> shape = shape_arg(output_shape, "output_shape");
  const Array product = view(product_obj, "product"), bias = view(bias_obj, "bias", true);
  Array y = output_view(y_obj, "out");
  const BnShape s = ops::check_bias_output(product, bias, shape, y);
  require_host("bias_output", {&product, &bias, &y});
  py::object res = result(y_obj, y);
  run(product, y.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().bias_output(product.ptr<const T>(), bias.ptr<const T>(), y.ptr<T>(), s, cpu::num_threads());
  });
  return res;
}

py::tuple bias_output_backward(py::handle dy_obj, py::handle dproduct_obj, py::handle dbias_obj) {
  const Array dy = view(dy_obj, "dy");
  Array dproduct = output_view(dproduct_obj, "out (dproduct)"), dbias = output_view(dbias_obj, "out (dbias)");
  const BnShape s = ops::check_bias_output_backward(dy, dproduct, dbias);
  require_host("bias_output_backward", {&dy, &dproduct, &dbias});
  py::object dproduct_res = result(dproduct_obj, dproduct), dbias_res = result(dbias_obj, dbias);
  without_gil([&] {
    ops::dispatch_float(dy.dtype, [&](auto t) {
      using T = decltype(t);
      std::vector<double> sums(s.channels, 0.0);
      if (dy.size() > 0)
        table().get<T>().bias_output_backward(dy.ptr<const T>(), dproduct.ptr<T>(), sums.data(), s,
                                              cpu::num_threads());
      T* out = dbias.ptr<T>();
      for (int64_t o = 0; o < s.channels; ++o) out[o] = T(sums[o]);
    });
  });
  return py::make_tuple(dproduct_res, dbias_res);
}

py::tuple max_pool2d(py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
                     py::handle y_obj, py::handle index_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, py::none());
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out (y)"), index = output_view(index_obj, "out (index)");
  const Window2d g = ops::check_max_pool(x, p, y, index);
  require_host("max_pool2d", {&x, &y, &index});
  py::object y_res = result(y_obj, y), index_res = result(index_obj, index);
  run(x, y.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().max_pool(x.ptr<const T>(), y.ptr<T>(), index.data, int(index.itemsize), g, cpu::num_threads());
  });
  return py::make_tuple(y_res, index_res);
}

py::object max_pool2d_backward(py::handle dy_obj, py::handle index_obj, py::handle input_shape,
                               py::handle kernel_size, py::handle stride, py::handle padding, py::handle dx_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, py::none());
  const std::vector<int64_t> shape = shape_arg(input_shape, "input_shape");
  const Array dy = view(dy_obj, "dy"), index = view(index_obj, "index");
  Array dx = output_view(dx_obj, "out");
  const Window2d g = ops::check_max_pool_backward(dy, index, shape, p, dx);
  require_host("max_pool2d_backward", {&dy, &index, &dx});
  py::object res = result(dx_obj, dx);
  run(dy, dx.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().max_pool_backward(dy.ptr<const T>(), index.data, int(index.itemsize), dx.ptr<T>(), g,
                                       cpu::num_threads());
  });
  return res;
}

py::object avg_pool2d(py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
                      py::handle y_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, py::none());
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out");
  const Window2d g = ops::check_avg_pool(x, p, y);
  require_host("avg_pool2d", {&x, &y});
  py::object res = result(y_obj, y);
  run(x, y.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().avg_pool(x.ptr<const T>(), y.ptr<T>(), g, cpu::num_threads());
  });
  return res;
}

py::object avg_pool2d_backward(py::handle dy_obj, py::handle input_shape, py::handle kernel_size,
                               py::handle stride, py::handle padding, py::handle dx_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, py::none());
  const std::vector<int64_t> shape = shape_arg(input_shape, "input_shape");
  const Array dy = view(dy_obj, "dy");
  Array dx = output_view(dx_obj, "out");
  const Window2d g = ops::check_avg_pool_backward(dy, shape, p, dx);
  require_host("avg_pool2d_backward", {&dy, &dx});
  py::object res = result(dx_obj, dx);
  run(dy, dx.size(), [&](auto t) {
    using T = decltype(t);
    table().get<T>().avg_pool_backward(dy.ptr<const T>(), dx.ptr<T>(), g, cpu::num_threads());
  });
  return res;
}

}  // namespace

void bind_spatial(py::module_& m) {
  m.def("im2col", &im2col, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("out"),
        "x (N, C, H, W) -> cols (C*kh*kw, N*OH*OW): row (c, i, j), column (n, p, q) is window (p, q)'s "
        "element (i, j) of plane (n, c), 0 in the zero padding.");
  m.def("col2im", &col2im, py::arg("cols"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("out"),
        "The adjoint of im2col: dx (input_shape), each element the sum of the cols entries that im2col "
        "copies it to (float64 sums in a fixed order).");
  m.def("bias_output", &bias_output, py::arg("product"), py::arg("bias"), py::arg("output_shape"), py::arg("out"),
        "product (O, N*P) -> y (N, O, ...) of output_shape, plus bias (O,) if not None.");
  m.def("bias_output_backward", &bias_output_backward, py::arg("dy"), py::arg("dproduct"), py::arg("dbias"),
        "dy (N, O, ...) -> (dproduct (O, N*P), dbias (O,)): dy transposed and its sum per channel "
        "(float64, fixed order).");
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("y"), py::arg("index"),
        "x (N, C, H, W) -> (y, index): each window's maximum (ties: the first; NaN: the first NaN) and its "
        "offset i*kw + j in the window (uint8 for windows of up to 256 elements, else int32).");
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("index"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("out"),
        "dx (input_shape): dy added at each window's saved index (float64 sums in a fixed order).");
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("out"), "x (N, C, H, W) -> the mean of each window, zero padding counted.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("out"),
        "dx (input_shape): each window's dy / (kh*kw) added over the window.");
}

}  // namespace bind
}  // namespace fastnn

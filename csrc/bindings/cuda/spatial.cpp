// The window ops of Conv2d and the pooling layers in the _cuda module: arguments to
// views, the op's checks (ops/spatial.cpp, as on the CPU), then the kernel on the
// call's stream.
#include "bindings/cuda/launch.h"
#include "bindings/spatial_args.h"
#include "cuda/kernels.h"
#include "ops/check.h"
#include "ops/spatial.h"

#include <vector>

namespace fastnn {
namespace bind {
namespace {

py::object im2col(py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
                  py::handle dilation, py::handle cols_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, dilation);
  const Array x = view(x_obj, "x");
  Array cols = output_view(cols_obj, "out");
  const Window2d g = ops::check_im2col(x, p, cols);
  const cudaStream_t stream = gpu::launch_for("im2col", {&x, &cols});
  py::object res = gpu::result(cols_obj, cols);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::im2col<T>(x.ptr<const T>(), cols.ptr<T>(), g, stream);
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
  const cudaStream_t stream = gpu::launch_for("col2im", {&cols, &dx});
  py::object res = gpu::result(dx_obj, dx);
  ops::dispatch_float(cols.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::col2im<T>(cols.ptr<const T>(), dx.ptr<T>(), g, stream);
  });
  return res;
}

py::object bias_output(py::handle product_obj, py::handle bias_obj, py::handle output_shape, py::handle y_obj) {
  const std::vector<int64_t> shape = shape_arg(output_shape, "output_shape");
  const Array product = view(product_obj, "product"), bias = view(bias_obj, "bias", true);
  Array y = output_view(y_obj, "out");
  const BnShape s = ops::check_bias_output(product, bias, shape, y);
  const cudaStream_t stream = gpu::launch_for("bias_output", {&product, &bias, &y});
  py::object res = gpu::result(y_obj, y);
  ops::dispatch_float(product.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::bias_output<T>(product.ptr<const T>(), bias.ptr<const T>(), y.ptr<T>(), s, stream);
  });
  return res;
}

py::tuple bias_output_backward(py::handle dy_obj, py::handle dproduct_obj, py::handle dbias_obj) {
  const Array dy = view(dy_obj, "dy");
  Array dproduct = output_view(dproduct_obj, "out (dproduct)"), dbias = output_view(dbias_obj, "out (dbias)");
  const BnShape s = ops::check_bias_output_backward(dy, dproduct, dbias);
  const cudaStream_t stream = gpu::launch_for("bias_output_backward", {&dy, &dproduct, &dbias});
  py::object dproduct_res = gpu::result(dproduct_obj, dproduct), dbias_res = gpu::result(dbias_obj, dbias);
  ops::dispatch_float(dy.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::bias_output_backward<T>(dy.ptr<const T>(), dproduct.ptr<T>(), dbias.ptr<T>(), s, stream);
  });
  return py::make_tuple(dproduct_res, dbias_res);
}

py::tuple max_pool2d(py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
                     py::handle y_obj, py::handle index_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, py::none());
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out (y)"), index = output_view(index_obj, "out (index)");
  const Window2d g = ops::check_max_pool(x, p, y, index);
  const cudaStream_t stream = gpu::launch_for("max_pool2d", {&x, &y, &index});
  py::object y_res = gpu::result(y_obj, y), index_res = gpu::result(index_obj, index);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::max_pool<T>(x.ptr<const T>(), y.ptr<T>(), index.data, int(index.itemsize), g, stream);
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
  const cudaStream_t stream = gpu::launch_for("max_pool2d_backward", {&dy, &index, &dx});
  py::object res = gpu::result(dx_obj, dx);
  ops::dispatch_float(dy.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::max_pool_backward<T>(dy.ptr<const T>(), index.data, int(index.itemsize), dx.ptr<T>(), g, stream);
  });
  return res;
}

py::object avg_pool2d(py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
                      py::handle y_obj) {
  const ops::WindowParams p = window_args(kernel_size, stride, padding, py::none());
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out");
  const Window2d g = ops::check_avg_pool(x, p, y);
  const cudaStream_t stream = gpu::launch_for("avg_pool2d", {&x, &y});
  py::object res = gpu::result(y_obj, y);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::avg_pool<T>(x.ptr<const T>(), y.ptr<T>(), g, stream);
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
  const cudaStream_t stream = gpu::launch_for("avg_pool2d_backward", {&dy, &dx});
  py::object res = gpu::result(dx_obj, dx);
  ops::dispatch_float(dy.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::avg_pool_backward<T>(dy.ptr<const T>(), dx.ptr<T>(), g, stream);
  });
  return res;
}

}  // namespace

void bind_cuda_spatial(py::module_& m) {
  m.def("im2col", &im2col, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("out"));
  m.def("col2im", &col2im, py::arg("cols"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("out"));
  m.def("bias_output", &bias_output, py::arg("product"), py::arg("bias"), py::arg("output_shape"), py::arg("out"));
  m.def("bias_output_backward", &bias_output_backward, py::arg("dy"), py::arg("dproduct"), py::arg("dbias"));
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("y"), py::arg("index"));
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("index"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("out"));
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("out"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("out"));
}

}  // namespace bind
}  // namespace fastnn

// PReLU and Maxout in the _cuda module: arguments to views, the op's checks
// (ops/channel_activations.cpp, as on the CPU), then the kernel on the call's stream.
#include "bindings/cuda/launch.h"
#include "cuda/kernels.h"
#include "ops/channel_activations.h"
#include "ops/check.h"

namespace fastnn {
namespace bind {
namespace {

int64_t axis_arg(py::handle obj) { return int_arg(obj, "channel_axis", ops::kChannelAxisRule); }
int64_t pieces_arg(py::handle obj) { return int_arg(obj, "pieces", ops::kPiecesRule); }

py::object prelu(py::handle x_obj, py::handle weight_obj, py::handle channel_axis, py::handle y_obj) {
  const int64_t axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x"), weight = view(weight_obj, "weight");
  Array y = output_view(y_obj, "out");
  const BnShape shape = ops::check_prelu(x, weight, axis, y);
  const cudaStream_t stream = gpu::launch_for("prelu", {&x, &weight, &y});
  py::object y_res = gpu::result(y_obj, y);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::prelu_forward<T>({nullptr, x.ptr<const T>(), y.ptr<T>(), shape, weight.ptr<const T>(), nullptr, 0}, stream);
  });
  return y_res;
}

py::tuple prelu_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj, py::handle channel_axis,
                         py::handle dx_obj, py::handle dweight_obj) {
  const int64_t axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy"), weight = view(weight_obj, "weight");
  Array dx = output_view(dx_obj, "out (dx)"), dweight = output_view(dweight_obj, "out (dweight)");
  const BnShape shape = ops::check_prelu_backward(dy, x, weight, axis, dx, dweight);
  const cudaStream_t stream = gpu::launch_for("prelu_backward", {&x, &dy, &weight, &dx});
  py::object dx_res = gpu::result(dx_obj, dx), dweight_res = gpu::result(dweight_obj, dweight);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::prelu_backward<T>({dy.ptr<const T>(), x.ptr<const T>(), dx.ptr<T>(), shape, weight.ptr<const T>(), nullptr, 0},
                            dweight.ptr<T>(), stream);
  });
  return py::make_tuple(dx_res, dweight_res);
}

py::object maxout(py::handle x_obj, py::handle pieces_obj, py::handle channel_axis, py::handle y_obj) {
  const int64_t pieces = pieces_arg(pieces_obj), axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out");
  const BnShape shape = ops::check_maxout(x, pieces, axis, y);
  const cudaStream_t stream = gpu::launch_for("maxout", {&x, &y});
  py::object y_res = gpu::result(y_obj, y);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::maxout_forward<T>({nullptr, x.ptr<const T>(), y.ptr<T>(), shape, pieces, 0}, stream);
  });
  return y_res;
}

py::object maxout_backward(py::handle dy_obj, py::handle x_obj, py::handle pieces_obj, py::handle channel_axis,
                           py::handle dx_obj) {
  const int64_t pieces = pieces_arg(pieces_obj), axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy");
  Array dx = output_view(dx_obj, "out");
  const BnShape shape = ops::check_maxout_backward(dy, x, pieces, axis, dx);
  const cudaStream_t stream = gpu::launch_for("maxout_backward", {&x, &dy, &dx});
  py::object dx_res = gpu::result(dx_obj, dx);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::maxout_backward<T>({dy.ptr<const T>(), x.ptr<const T>(), dx.ptr<T>(), shape, pieces, 0}, stream);
  });
  return dx_res;
}

}  // namespace

void bind_cuda_channel_activations(py::module_& m) {
  m.def("prelu", &prelu, py::arg("x"), py::arg("weight"), py::arg("channel_axis"), py::arg("y"));
  m.def("prelu_backward", &prelu_backward, py::arg("dy"), py::arg("x"), py::arg("weight"),
        py::arg("channel_axis"), py::arg("dx"), py::arg("dweight"));
  m.def("maxout", &maxout, py::arg("x"), py::arg("pieces"), py::arg("channel_axis"), py::arg("y"));
  m.def("maxout_backward", &maxout_backward, py::arg("dy"), py::arg("x"), py::arg("pieces"),
        py::arg("channel_axis"), py::arg("dx"));
}

}  // namespace bind
}  // namespace fastnn

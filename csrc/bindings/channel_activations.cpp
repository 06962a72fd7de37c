// PReLU and Maxout in the _cpu module: arguments to views, the op's checks
// (ops/channel_activations.cpp), then the kernel with the GIL released.
#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "ops/channel_activations.h"
#include "ops/check.h"

#include <vector>

namespace fastnn {
namespace bind {
namespace {

template <class T>
PreluArgs<T> prelu_args(const Array* dy, const Array& x, const Array& out, const Array& weight, BnShape shape,
                        double* dweight) {
  return {dy ? dy->ptr<const T>() : nullptr, x.ptr<const T>(), out.ptr<T>(), shape, weight.ptr<const T>(),
          dweight, cpu::num_threads()};
}

template <class T>
MaxoutArgs<T> maxout_args(const Array* dy, const Array& x, const Array& out, BnShape shape, int64_t pieces) {
  return {dy ? dy->ptr<const T>() : nullptr, x.ptr<const T>(), out.ptr<T>(), shape, pieces, cpu::num_threads()};
}

int64_t axis_arg(py::handle obj) { return int_arg(obj, "channel_axis", ops::kChannelAxisRule); }
int64_t pieces_arg(py::handle obj) { return int_arg(obj, "pieces", ops::kPiecesRule); }

py::object prelu(py::handle x_obj, py::handle weight_obj, py::handle channel_axis, py::handle y_obj) {
  const int64_t axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x"), weight = view(weight_obj, "weight");
  Array y = output_view(y_obj, "out");
  const BnShape shape = ops::check_prelu(x, weight, axis, y);
  require_host("prelu", {&x});
  py::object y_res = result(y_obj, y);
  if (x.size() > 0)
    without_gil([&] {
      ops::dispatch_float(x.dtype, [&](auto t) {
        using T = decltype(t);
        cpu::kernels().channel_activations.get<T>().prelu_forward(prelu_args<T>(nullptr, x, y, weight, shape, nullptr));
      });
    });
  return y_res;
}

py::tuple prelu_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj, py::handle channel_axis,
                         py::handle dx_obj, py::handle dweight_obj) {
  const int64_t axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy"), weight = view(weight_obj, "weight");
  Array dx = output_view(dx_obj, "out (dx)"), dweight = output_view(dweight_obj, "out (dweight)");
  const BnShape shape = ops::check_prelu_backward(dy, x, weight, axis, dx, dweight);
  require_host("prelu_backward", {&x});
  py::object dx_res = result(dx_obj, dx), dweight_res = result(dweight_obj, dweight);
  without_gil([&] {
    ops::dispatch_float(x.dtype, [&](auto t) {
      using T = decltype(t);
      std::vector<double> dw(shape.channels, 0.0);
      if (x.size() > 0)
        cpu::kernels().channel_activations.get<T>().prelu_backward(prelu_args<T>(&dy, x, dx, weight, shape, dw.data()));
      T* out = dweight.ptr<T>();
      for (int64_t c = 0; c < shape.channels; ++c) out[c] = T(dw[c]);
    });
  });
  return py::make_tuple(dx_res, dweight_res);
}

py::object maxout(py::handle x_obj, py::handle pieces_obj, py::handle channel_axis, py::handle y_obj) {
  const int64_t pieces = pieces_arg(pieces_obj), axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out");
  const BnShape shape = ops::check_maxout(x, pieces, axis, y);
  require_host("maxout", {&x});
  py::object y_res = result(y_obj, y);
  if (x.size() > 0)
    without_gil([&] {
      ops::dispatch_float(x.dtype, [&](auto t) {
        using T = decltype(t);
        cpu::kernels().channel_activations.get<T>().maxout_forward(maxout_args<T>(nullptr, x, y, shape, pieces));
      });
    });
  return y_res;
}

py::object maxout_backward(py::handle dy_obj, py::handle x_obj, py::handle pieces_obj, py::handle channel_axis,
                           py::handle dx_obj) {
  const int64_t pieces = pieces_arg(pieces_obj), axis = axis_arg(channel_axis);
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy");
  Array dx = output_view(dx_obj, "out");
  const BnShape shape = ops::check_maxout_backward(dy, x, pieces, axis, dx);
  require_host("maxout_backward", {&x});
  py::object dx_res = result(dx_obj, dx);
  if (x.size() > 0)
    without_gil([&] {
      ops::dispatch_float(x.dtype, [&](auto t) {
        using T = decltype(t);
        cpu::kernels().channel_activations.get<T>().maxout_backward(maxout_args<T>(&dy, x, dx, shape, pieces));
      });
    });
  return dx_res;
}

}  // namespace

void bind_channel_activations(py::module_& m) {
  m.def("prelu", &prelu, py::arg("x"), py::arg("weight"), py::arg("channel_axis"), py::arg("y"));
  m.def("prelu_backward", &prelu_backward, py::arg("dy"), py::arg("x"), py::arg("weight"),
        py::arg("channel_axis"), py::arg("dx"), py::arg("dweight"));
  m.def("maxout", &maxout, py::arg("x"), py::arg("pieces"), py::arg("channel_axis"), py::arg("y"));
  m.def("maxout_backward", &maxout_backward, py::arg("dy"), py::arg("x"), py::arg("pieces"),
        py::arg("channel_axis"), py::arg("dx"));
}

}  // namespace bind
}  // namespace fastnn

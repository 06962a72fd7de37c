// Bindings for PReLU and Maxout: argument checks, then the kernel with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"

#include <vector>

namespace py = pybind11;

namespace fastnn {
namespace bind {
namespace {

template <class T>
const fastnn::cpu::ChannelActivationKernels<T>& chact_kernels();
template <>
const fastnn::cpu::ChannelActivationKernels<float>& chact_kernels<float>() {
  return fastnn::cpu::kernels().chact_f32;
}
template <>
const fastnn::cpu::ChannelActivationKernels<double>& chact_kernels<double>() {
  return fastnn::cpu::kernels().chact_f64;
}

int64_t element_count(const Arg& a) { return static_cast<int64_t>(a.array.size()); }

// x as (outer, C, inner) around its channel axis: 1 (channels first) or -1 (last).
fastnn::cpu::BnShape channel_shape(const Arg& x, int channel_axis, const char* needs) {
  if (channel_axis != 1 && channel_axis != -1)
    throw py::value_error("channel_axis must be 1 (channels first) or -1 (channels last), got " +
                          std::to_string(channel_axis));
  const py::ssize_t nd = x.array.ndim();
  const py::ssize_t axis = channel_axis == 1 ? 1 : nd - 1;
  if (axis >= nd || axis < 0)
    throw py::value_error(std::string(needs) + " needs x with a channel axis " +
                          std::to_string(channel_axis) + ", got x of shape " + shape_str(shape_of(x.array)));
  fastnn::cpu::BnShape s{1, x.array.shape(axis), 1};
  for (py::ssize_t d = 0; d < axis; ++d) s.outer *= x.array.shape(d);
  for (py::ssize_t d = axis + 1; d < nd; ++d) s.inner *= x.array.shape(d);
  return s;
}

// The PReLU view of x: (1, 1, n) for a (1,) weight, else around the channel axis, whose
// length the weight must have.
fastnn::cpu::BnShape prelu_shape(const Arg& x, const Arg& weight, int channel_axis) {
  require_like(weight, x, shape_of(weight.array));  // dtype and layout
  if (weight.array.ndim() != 1)
    throw py::value_error("weight must have shape (1,) or (C,), got " + shape_str(shape_of(weight.array)));
  const int64_t k = weight.array.shape(0);
  if (channel_axis != 1 && channel_axis != -1)
    throw py::value_error("channel_axis must be 1 (channels first) or -1 (channels last), got " +
                          std::to_string(channel_axis));
  if (k == 1) return {1, 1, element_count(x)};
  const fastnn::cpu::BnShape s = channel_shape(x, channel_axis, "a weight of shape (C,)");
  if (k != s.channels)
    throw py::value_error("weight must have shape (1,) or (" + std::to_string(s.channels) +
                          ",) (the channels of x along channel_axis " + std::to_string(channel_axis) +
                          "), got " + shape_str(shape_of(weight.array)));
  return s;
}

template <class T>
fastnn::cpu::PreluArgs<T> prelu_args(const Arg* dy, const Arg& x, const Arg& out, const Arg& weight,
                                     fastnn::cpu::BnShape shape, double* dweight) {
  return {dy ? dy->cdata<T>() : nullptr, x.cdata<T>(), out.data<T>(), shape, weight.cdata<T>(),
          dweight, fastnn::cpu::num_threads()};
}

py::array prelu(py::handle x_obj, py::handle weight_obj, int channel_axis, py::handle y_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const Arg weight = ndarray_arg(weight_obj, "weight");
  const fastnn::cpu::BnShape shape = prelu_shape(x, weight, channel_axis);
  const Arg y = output_arg(y_obj, "out", x, shape_of(x.array));
  require_no_overlap({&y}, {&x, &weight, &y}, {{"out", "x"}});
  if (element_count(x) > 0) {
    py::gil_scoped_release release;
    if (ft == Float::f32)
      chact_kernels<float>().prelu_forward(prelu_args<float>(nullptr, x, y, weight, shape, nullptr));
    else
      chact_kernels<double>().prelu_forward(prelu_args<double>(nullptr, x, y, weight, shape, nullptr));
  }
  return y.array;
}

template <class T>
void run_prelu_backward(const Arg& dy, const Arg& x, const Arg& dx, const Arg& weight,
                        const Arg& dweight, fastnn::cpu::BnShape shape) {
  std::vector<double> dw(shape.channels, 0.0);
  if (element_count(x) > 0) chact_kernels<T>().prelu_backward(prelu_args<T>(&dy, x, dx, weight, shape, dw.data()));
  T* out = dweight.data<T>();
  for (int64_t c = 0; c < shape.channels; ++c) out[c] = T(dw[c]);
}

py::tuple prelu_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj, int channel_axis,
                         py::handle dx_obj, py::handle dweight_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const Arg dy = ndarray_arg(dy_obj, "dy");
  require_like(dy, x, shape_of(x.array));
  const Arg weight = ndarray_arg(weight_obj, "weight");
  const fastnn::cpu::BnShape shape = prelu_shape(x, weight, channel_axis);
  const Arg dx = output_arg(dx_obj, "out (dx)", x, shape_of(x.array));
  const Arg dweight = output_arg(dweight_obj, "out (dweight)", x, shape_of(weight.array));
  require_no_overlap({&dx, &dweight}, {&dy, &x, &weight, &dx, &dweight},
                     {{"out (dx)", "dy"}, {"out (dx)", "x"}});
  {
    py::gil_scoped_release release;
    if (ft == Float::f32)
      run_prelu_backward<float>(dy, x, dx, weight, dweight, shape);
    else
      run_prelu_backward<double>(dy, x, dx, weight, dweight, shape);
  }
  return py::make_tuple(dx.array, dweight.array);
}

// Checks pieces against x; returns x's shape around the channel axis.
fastnn::cpu::BnShape maxout_shape(const Arg& x, int64_t pieces, int channel_axis) {
  const fastnn::cpu::BnShape s = channel_shape(x, channel_axis, "maxout");
  if (pieces < 1 || pieces > (int64_t(1) << 24))
    throw py::value_error("pieces must be an integer in [1, 2**24], got " + std::to_string(pieces));
  if (s.channels % pieces != 0)
    throw py::value_error("pieces (" + std::to_string(pieces) + ") must divide the " +
                          std::to_string(s.channels) + " channels of x along channel_axis " +
                          std::to_string(channel_axis));
  return s;
}

std::vector<py::ssize_t> maxout_out_shape(const Arg& x, int64_t pieces, int channel_axis) {
  std::vector<py::ssize_t> shape = shape_of(x.array);
  const size_t axis = channel_axis == 1 ? 1 : shape.size() - 1;
  shape[axis] /= pieces;
  return shape;
}

template <class T>
fastnn::cpu::MaxoutArgs<T> maxout_args(const Arg* dy, const Arg& x, const Arg& out,
                                       fastnn::cpu::BnShape shape, int64_t pieces) {
  return {dy ? dy->cdata<T>() : nullptr, x.cdata<T>(), out.data<T>(), shape, pieces,
          fastnn::cpu::num_threads()};
}

py::array maxout(py::handle x_obj, int64_t pieces, int channel_axis, py::handle y_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const fastnn::cpu::BnShape shape = maxout_shape(x, pieces, channel_axis);
  const Arg y = output_arg(y_obj, "out", x, maxout_out_shape(x, pieces, channel_axis));
  require_no_overlap({&y}, {&x, &y});
  if (element_count(x) > 0) {
    py::gil_scoped_release release;
    if (ft == Float::f32)
      chact_kernels<float>().maxout_forward(maxout_args<float>(nullptr, x, y, shape, pieces));
    else
      chact_kernels<double>().maxout_forward(maxout_args<double>(nullptr, x, y, shape, pieces));
  }
  return y.array;
}

py::array maxout_backward(py::handle dy_obj, py::handle x_obj, int64_t pieces, int channel_axis,
                          py::handle dx_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const fastnn::cpu::BnShape shape = maxout_shape(x, pieces, channel_axis);
  const Arg dy = ndarray_arg(dy_obj, "dy");
  require_like(dy, x, maxout_out_shape(x, pieces, channel_axis));
  const Arg dx = output_arg(dx_obj, "out", x, shape_of(x.array));
  require_no_overlap({&dx}, {&dy, &x, &dx}, {{"out", "x"}});
  if (element_count(x) > 0) {
    py::gil_scoped_release release;
    if (ft == Float::f32)
      chact_kernels<float>().maxout_backward(maxout_args<float>(&dy, x, dx, shape, pieces));
    else
      chact_kernels<double>().maxout_backward(maxout_args<double>(&dy, x, dx, shape, pieces));
  }
  return dx.array;
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

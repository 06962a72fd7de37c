// Bindings for batch norm: argument checks, then the kernel with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"
#include "fastnn/bn_math.h"

#include <cmath>
#include <vector>

namespace py = pybind11;

namespace fastnn {
namespace bind {
namespace {


// x as (outer, C, inner) for channel_axis 1 (channels first) or -1 (channels last).
fastnn::cpu::BnShape bn_shape(const Arg& x, int channel_axis) {
  const py::ssize_t nd = x.array.ndim();
  if (nd < 2)
    throw py::value_error("x must have at least 2 dimensions (N, C, ...), got shape " +
                          shape_str(shape_of(x.array)));
  if (channel_axis != 1 && channel_axis != -1)
    throw py::value_error("channel_axis must be 1 (channels first) or -1 (channels last), got " +
                          std::to_string(channel_axis));
  const py::ssize_t axis = channel_axis == 1 ? 1 : nd - 1;
  fastnn::cpu::BnShape s{1, x.array.shape(axis), 1};
  for (py::ssize_t d = 0; d < axis; ++d) s.outer *= x.array.shape(d);
  for (py::ssize_t d = axis + 1; d < nd; ++d) s.inner *= x.array.shape(d);
  return s;
}

// activation: "" (None) or "relu"; returns whether it is the ReLU.
bool relu_activation(const std::string& activation) {
  if (activation.empty()) return false;
  if (activation == "relu") return true;
  throw py::value_error("activation must be None or 'relu', got '" + activation + "'");
}

void require_per_channel(const Arg& a, const Arg& x, py::ssize_t channels) {
  if (a.given()) require_like(a, x, {channels});
}

template <class T>
const fastnn::cpu::BatchNormKernels<T>& bn_kernels();
template <>
const fastnn::cpu::BatchNormKernels<float>& bn_kernels<float>() { return fastnn::cpu::kernels().bn_f32; }
template <>
const fastnn::cpu::BatchNormKernels<double>& bn_kernels<double>() { return fastnn::cpu::kernels().bn_f64; }

template <class T>
void run_bn_forward(const Arg& x, const Arg& y, const Arg& weight, const Arg& bias,
                    const Arg& running_mean, const Arg& running_var, const Arg& mean_out,
                    const Arg& invstd_out, fastnn::cpu::BnShape shape, bool training,
                    double momentum, double eps, bool relu) {
  const int64_t C = shape.channels;
  std::vector<double> mean(C), var(C), invstd(C);
  fastnn::cpu::BnForwardArgs<T> a{x.cdata<T>(), y.data<T>(), shape, weight.cdata<T>(),
                                  bias.cdata<T>(), eps, mean.data(), var.data(), invstd.data(),
                                  fastnn::cpu::num_threads(), relu};
  const bool empty = shape.outer * shape.inner * C == 0;
  T* rm = running_mean.data<T>();
  T* rv = running_var.data<T>();
  if (training) {
    if (!empty) bn_kernels<T>().forward_train(a);
    const double count = double(shape.outer) * double(shape.inner);
    for (int64_t c = 0; c < C; ++c) {
      invstd[c] = fastnn::bn_invstd(var[c], eps);
      if (rm) {
        rm[c] = T((1 - momentum) * double(rm[c]) + momentum * mean[c]);
        rv[c] = T((1 - momentum) * double(rv[c]) + momentum * var[c] * count / (count - 1));
      }
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = double(rm[c]);
      invstd[c] = fastnn::bn_invstd(double(rv[c]), eps);
    }
    if (!empty) bn_kernels<T>().forward_eval(a);
  }
  T* mo = mean_out.data<T>();
  T* io = invstd_out.data<T>();
  for (int64_t c = 0; c < C; ++c) {
    mo[c] = T(mean[c]);
    io[c] = T(invstd[c]);
  }
}

py::tuple batch_norm_forward(py::handle x_obj, py::handle weight_obj, py::handle bias_obj,
                             py::handle running_mean_obj, py::handle running_var_obj,
                             bool training, double momentum, double eps, int channel_axis,
                             const std::string& activation, py::handle y_obj, py::handle mean_obj,
                             py::handle invstd_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const fastnn::cpu::BnShape shape = bn_shape(x, channel_axis);
  const py::ssize_t C = shape.channels;
  const Arg weight = ndarray_arg(weight_obj, "weight", true);
  const Arg bias = ndarray_arg(bias_obj, "bias", true);
  const Arg running_mean = ndarray_arg(running_mean_obj, "running_mean", true);
  const Arg running_var = ndarray_arg(running_var_obj, "running_var", true);
  for (const Arg* a : {&weight, &bias, &running_mean, &running_var}) require_per_channel(*a, x, C);
  if (running_mean.given() != running_var.given())
    throw py::value_error(std::string(running_mean.given() ? "running_var" : "running_mean") +
                          " is None but " + (running_mean.given() ? "running_mean" : "running_var") +
                          " is given; pass both running statistics or neither");
  const bool relu = relu_activation(activation);
  require_positive(eps, "eps");
  require_unit_interval(momentum, "momentum");
  if (training) {
    if (shape.outer * shape.inner <= 1)
      throw py::value_error("Expected more than 1 value per channel when training, got x of shape " +
                            shape_str(shape_of(x.array)));
    if (running_mean.given()) {
      require_writeable(running_mean);
      require_writeable(running_var);
    }
  } else if (!running_mean.given()) {
    throw py::value_error("running_mean and running_var are required when training=False");
  }
  const Arg y = output_arg(y_obj, "out (y)", x, shape_of(x.array));
  const Arg mean_out = output_arg(mean_obj, "out (mean)", x, {C});
  const Arg invstd_out = output_arg(invstd_obj, "out (invstd)", x, {C});
  std::vector<const Arg*> written = {&y, &mean_out, &invstd_out};
  if (training) written.insert(written.end(), {&running_mean, &running_var});
  require_no_overlap(written, {&x, &weight, &bias, &running_mean, &running_var, &y, &mean_out, &invstd_out},
                     {{"out (y)", "x"}});

  {
    py::gil_scoped_release release;
    if (ft == Float::f32)
      run_bn_forward<float>(x, y, weight, bias, running_mean, running_var, mean_out, invstd_out,
                            shape, training, momentum, eps, relu);
    else
      run_bn_forward<double>(x, y, weight, bias, running_mean, running_var, mean_out, invstd_out,
                             shape, training, momentum, eps, relu);
  }
  return py::make_tuple(y.array, mean_out.array, invstd_out.array);
}

template <class T>
void run_bn_backward(const Arg& dy, const Arg& x, const Arg& y, const Arg& dx, const Arg& weight,
                     const Arg& mean, const Arg& invstd, const Arg& dweight, const Arg& dbias,
                     fastnn::cpu::BnShape shape, bool training) {
  const int64_t C = shape.channels;
  std::vector<double> dw(C, 0.0), db(C, 0.0);
  fastnn::cpu::BnBackwardArgs<T> a{dy.cdata<T>(), x.cdata<T>(), dx.data<T>(), shape,
                                   weight.cdata<T>(), mean.cdata<T>(), invstd.cdata<T>(),
                                   dw.data(), db.data(), fastnn::cpu::num_threads(), y.cdata<T>()};
  if (shape.outer * shape.inner * C > 0)
    (training ? bn_kernels<T>().backward_train : bn_kernels<T>().backward_eval)(a);
  T* dwo = dweight.data<T>();
  T* dbo = dbias.data<T>();
  for (int64_t c = 0; c < C; ++c) {
    dwo[c] = T(dw[c]);
    dbo[c] = T(db[c]);
  }
}

py::tuple batch_norm_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj,
                              py::handle mean_obj, py::handle invstd_obj, bool training,
                              int channel_axis, const std::string& activation, py::handle y_obj,
                              py::handle dx_obj, py::handle dweight_obj, py::handle dbias_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const fastnn::cpu::BnShape shape = bn_shape(x, channel_axis);
  const py::ssize_t C = shape.channels;
  const Arg dy = ndarray_arg(dy_obj, "dy");
  require_like(dy, x, shape_of(x.array));
  const Arg weight = ndarray_arg(weight_obj, "weight", true);
  const Arg mean = ndarray_arg(mean_obj, "mean");
  const Arg invstd = ndarray_arg(invstd_obj, "invstd");
  for (const Arg* a : {&weight, &mean, &invstd}) require_per_channel(*a, x, C);
  // With the ReLU, y (the forward's output) gives the mask y > 0: exactly the forward's.
  const bool relu = relu_activation(activation);
  const Arg y = ndarray_arg(y_obj, "y", true);
  if (relu && !y.given())
    throw py::value_error("y (the forward output) is required with activation='relu'");
  if (!relu && y.given())
    throw py::value_error("y is only used with activation='relu'; pass y=None");
  if (y.given()) require_like(y, x, shape_of(x.array));
  const Arg dx = output_arg(dx_obj, "out (dx)", x, shape_of(x.array));
  const Arg dweight = output_arg(dweight_obj, "out (dweight)", x, {C});
  const Arg dbias = output_arg(dbias_obj, "out (dbias)", x, {C});
  require_no_overlap({&dx, &dweight, &dbias},
                     {&dy, &x, &y, &weight, &mean, &invstd, &dx, &dweight, &dbias},
                     {{"out (dx)", "dy"}, {"out (dx)", "x"}, {"out (dx)", "y"}});
  {
    py::gil_scoped_release release;
    if (ft == Float::f32)
      run_bn_backward<float>(dy, x, y, dx, weight, mean, invstd, dweight, dbias, shape, training);
    else
      run_bn_backward<double>(dy, x, y, dx, weight, mean, invstd, dweight, dbias, shape, training);
  }
  return py::make_tuple(dx.array, dweight.array, dbias.array);
}

}  // namespace

void bind_batch_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("training"),
        py::arg("momentum"), py::arg("eps"), py::arg("channel_axis"),
        py::arg("activation"), py::arg("y"),
        py::arg("mean"), py::arg("invstd"));
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"),
        py::arg("weight"), py::arg("mean"), py::arg("invstd"), py::arg("training"),
        py::arg("channel_axis"), py::arg("activation"), py::arg("y"),
        py::arg("dx"), py::arg("dweight"), py::arg("dbias"));
}

}  // namespace bind
}  // namespace fastnn

// The activations and softmax cross-entropy in the _cuda module: arguments to views,
// the op's checks (ops/activations.cpp, as on the CPU), then the kernel on the call's
// stream. Device labels are range-checked on the device (see softmax_cross_entropy).
#include "bindings/cuda/launch.h"
#include "cuda/kernels.h"
#include "ops/activations.h"

#include <cstring>
#include <string>

namespace fastnn {
namespace bind {
namespace {

py::object forward(const char* op, Activation kind, ActivationParams p, py::handle x_obj, py::handle out_obj) {
  const Array x = view(x_obj, "x");
  Array y = output_view(out_obj, "out");
  ops::check_unary(x, y);
  const cudaStream_t stream = gpu::launch_for(op, {&x, &y});
  py::object y_res = gpu::result(out_obj, y);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::activation_forward<T>(kind, p, x.ptr<const T>(), y.ptr<T>(), x.size(), stream);
  });
  return y_res;
}

py::object backward(const char* op, Activation kind, ActivationParams p, py::handle dy_obj, py::handle x_obj,
                    py::handle out_obj) {
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy");
  Array dx = output_view(out_obj, "out");
  ops::check_unary_backward(dy, x, dx);
  const cudaStream_t stream = gpu::launch_for(op, {&x, &dy, &dx});
  py::object dx_res = gpu::result(out_obj, dx);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::activation_backward<T>(kind, p, dy.ptr<const T>(), x.ptr<const T>(), dx.ptr<T>(), x.size(), stream);
  });
  return dx_res;
}

py::object math_eval(const std::string& name, py::handle x_obj, py::handle out_obj) {
  const MathFunction fn = ops::math_function(name.c_str());
  const Array x = view(x_obj, "x");
  Array y = output_view(out_obj, "out");
  ops::check_unary(x, y);
  const cudaStream_t stream = gpu::launch_for("_math_eval", {&x, &y});
  py::object y_res = gpu::result(out_obj, y);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::math_eval<T>(fn, x.ptr<const T>(), y.ptr<T>(), x.size(), stream);
  });
  return y_res;
}

// The labels' range on the device. check_labels=True: a kernel finds the first row whose
// label is outside [0, classes), its index is read back (the call's one synchronization)
// and a ValueError names it before any result is allocated or written. Otherwise
// nothing waits: the softmax kernels never index with such a label and give its row a
// NaN loss (and gradient), so the mean loss is NaN.
void check_device_labels(const Array& labels, const ops::SoftmaxPlan& plan, cudaStream_t stream) {
  if (plan.rows == 0) return;
  int64_t* flag = nullptr;
  uint64_t first_bad = ~uint64_t(0);
  int64_t value = 0;
  cuda::check(cudaMallocAsync(reinterpret_cast<void**>(&flag), sizeof(int64_t), stream), "label check");
  cudaError_t err = cudaMemsetAsync(flag, 0xff, sizeof(int64_t), stream);
  if (err == cudaSuccess) {
    try {
      cuda::find_bad_label(labels.data, plan.label_bytes, plan.rows, plan.classes, flag, stream);
    } catch (...) {
      cudaFreeAsync(flag, stream);
      throw;
    }
    err = without_gil([&] {
      cudaError_t e = cudaMemcpyAsync(&first_bad, flag, sizeof first_bad, cudaMemcpyDeviceToHost, stream);
      if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
      if (e == cudaSuccess && first_bad != ~uint64_t(0)) {
        const char* at = static_cast<const char*>(labels.data) + int64_t(first_bad) * plan.label_bytes;
        e = cudaMemcpy(&value, at, size_t(plan.label_bytes), cudaMemcpyDeviceToHost);
        if (plan.label_bytes == 4) {
          int32_t v32;
          std::memcpy(&v32, &value, 4);
          value = v32;
        }
      }
      return e;
    });
  }
  cudaFreeAsync(flag, stream);
  cuda::check(err, "softmax_cross_entropy label check");
  if (first_bad != ~uint64_t(0))
    throw ops::ValueError("labels[" + std::to_string(first_bad) + "] = " + std::to_string(value) +
                          " is out of range: labels must be in [0, " + std::to_string(plan.classes) + ")");
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj, py::handle loss_obj,
                                py::handle probs_obj, py::handle check_labels) {
  const bool check = flag_arg(check_labels, "check_labels");
  const Array logits = view(logits_obj, "logits"), labels = view(labels_obj, "labels");
  Array loss = output_view(loss_obj, "out (loss)"), probs = output_view(probs_obj, "out (probs)");
  const ops::SoftmaxPlan plan = ops::check_softmax_cross_entropy(logits, labels, loss, probs);
  const cudaStream_t stream = gpu::launch_for("softmax_cross_entropy", {&logits, &labels, &loss, &probs});
  if (check) check_device_labels(labels, plan, stream);
  py::object loss_res = gpu::result(loss_obj, loss), probs_res = gpu::result(probs_obj, probs);
  ops::dispatch_float(logits.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::softmax_xent<T>(logits.ptr<const T>(), labels.data, plan.label_bytes, probs.ptr<T>(), loss.ptr<T>(),
                          plan.rows, plan.classes, stream);
  });
  return py::make_tuple(loss_res, probs_res);
}

py::object softmax_cross_entropy_backward(py::handle probs_obj, py::handle labels_obj, py::handle out_obj,
                                          py::handle check_labels) {
  const bool check = flag_arg(check_labels, "check_labels");
  const Array probs = view(probs_obj, "probs"), labels = view(labels_obj, "labels");
  Array dlogits = output_view(out_obj, "out");
  const ops::SoftmaxPlan plan = ops::check_softmax_cross_entropy_backward(probs, labels, dlogits);
  const cudaStream_t stream = gpu::launch_for("softmax_cross_entropy_backward", {&probs, &labels, &dlogits});
  if (check) check_device_labels(labels, plan, stream);
  py::object dlogits_res = gpu::result(out_obj, dlogits);
  ops::dispatch_float(probs.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::softmax_xent_backward<T>(probs.ptr<const T>(), labels.data, plan.label_bytes, dlogits.ptr<T>(),
                                   plan.rows, plan.classes, stream);
  });
  return dlogits_res;
}

template <class... Extra, class Params>
void def_pair(py::module_& m, const char* name, Activation kind, Params params) {
  const std::string backward_name = std::string(name) + "_backward";
  m.def(name, [name, kind, params](py::handle x, Extra... e, py::handle out) {
    return forward(name, kind, params(e...), x, out);
  });
  m.def(backward_name.c_str(), [backward_name, kind, params](py::handle dy, py::handle x, Extra... e,
                                                             py::handle out) {
    return backward(backward_name.c_str(), kind, params(e...), dy, x, out);
  });
}

}  // namespace

void bind_cuda_activations(py::module_& m) {
  def_pair<>(m, "relu", Activation::relu, &ops::plain_params);
  def_pair<double>(m, "leaky_relu", Activation::leaky_relu, &ops::leaky_relu_params);
  def_pair<double>(m, "elu", Activation::elu, &ops::elu_params);
  def_pair<>(m, "selu", Activation::elu, &ops::selu_params);
  m.def("gelu", [](py::handle x, const std::string& approximate, py::handle out) {
    return forward("gelu", ops::gelu_kind(approximate.c_str()), ops::plain_params(), x, out);
  });
  m.def("gelu_backward", [](py::handle dy, py::handle x, const std::string& approximate, py::handle out) {
    return backward("gelu_backward", ops::gelu_kind(approximate.c_str()), ops::plain_params(), dy, x, out);
  });
  def_pair<>(m, "sigmoid", Activation::sigmoid, &ops::plain_params);
  def_pair<>(m, "tanh", Activation::tanh, &ops::plain_params);
  def_pair<>(m, "silu", Activation::silu, &ops::plain_params);
  def_pair<double, double>(m, "softplus", Activation::softplus, &ops::softplus_params);
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"), py::arg("loss"),
        py::arg("probs"), py::arg("check_labels") = false);
  m.def("softmax_cross_entropy_backward", &softmax_cross_entropy_backward, py::arg("probs"), py::arg("labels"),
        py::arg("out"), py::arg("check_labels") = false);
  m.def("_math_eval", &math_eval, py::arg("name"), py::arg("x"), py::arg("out") = py::none(),
        "Testing hook: the GPU's exp, expm1, log1p, tanh or erf (the CPU's formulas).");
}

}  // namespace bind
}  // namespace fastnn

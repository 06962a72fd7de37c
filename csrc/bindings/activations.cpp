// The activations and softmax cross-entropy in the _cpu module: arguments to views, the
// op's checks (ops/activations.cpp), then the kernel with the GIL released.
#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "ops/activations.h"

#include <cmath>
#include <string>

namespace fastnn {
namespace bind {
namespace {

// y = f(x) by call(kernels of T, x, y, n, threads); out may be x.
template <class Call>
py::object map_unary(const char* op, py::handle x_obj, py::handle out_obj, const Call& call) {
  const Array x = view(x_obj, "x");
  Array y = output_view(out_obj, "out");
  ops::check_unary(x, y);
  require_host(op, {&x});
  py::object y_res = result(out_obj, y);
  without_gil([&] {
    ops::dispatch_float(x.dtype, [&](auto t) {
      using T = decltype(t);
      call(cpu::kernels().activations.get<T>(), x.ptr<const T>(), y.ptr<T>(), x.size(), cpu::num_threads());
    });
  });
  return y_res;
}

py::object forward(const char* op, Activation kind, ActivationParams p, py::handle x, py::handle out) {
  return map_unary(op, x, out, [&](const auto& k, const auto* xp, auto* yp, int64_t n, int threads) {
    k.forward(kind, xp, yp, n, p, threads);
  });
}

// dx = dy * f'(x); out may be dy or x.
py::object backward(const char* op, Activation kind, ActivationParams p, py::handle dy_obj, py::handle x_obj,
                    py::handle out_obj) {
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy");
  Array dx = output_view(out_obj, "out");
  ops::check_unary_backward(dy, x, dx);
  require_host(op, {&x});
  py::object dx_res = result(out_obj, dx);
  without_gil([&] {
    ops::dispatch_float(x.dtype, [&](auto t) {
      using T = decltype(t);
      cpu::kernels().activations.get<T>().backward(kind, dy.ptr<const T>(), x.ptr<const T>(), dx.ptr<T>(),
                                                   x.size(), p, cpu::num_threads());
    });
  });
  return dx_res;
}

// Testing hook: y = fn(x) by the vector math of the SIMD level in use.
py::object math_eval(const std::string& name, py::handle x, py::handle out) {
  const MathFunction fn = ops::math_function(name.c_str());
  return map_unary("_math_eval", x, out, [&](const auto& k, const auto* xp, auto* yp, int64_t n, int threads) {
    k.math(fn, xp, yp, n, threads);
  });
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj, py::handle loss_obj,
                                py::handle probs_obj) {
  const Array logits = view(logits_obj, "logits"), labels = view(labels_obj, "labels");
  Array loss = output_view(loss_obj, "out (loss)"), probs = output_view(probs_obj, "out (probs)");
  const ops::SoftmaxPlan plan = ops::check_softmax_cross_entropy(logits, labels, loss, probs);
  require_host("softmax_cross_entropy", {&logits});
  py::object loss_res = result(loss_obj, loss), probs_res = result(probs_obj, probs);
  without_gil([&] {
    ops::dispatch_float(logits.dtype, [&](auto t) {
      using T = decltype(t);
      double mean = NAN;  // no rows: the mean of nothing
      if (plan.rows > 0)
        mean = cpu::kernels().activations.get<T>().softmax_xent(logits.ptr<const T>(), labels.ptr<const void>(),
                                                                plan.label_bytes, probs.ptr<T>(), plan.rows,
                                                                plan.classes, cpu::num_threads());
      *loss.ptr<T>() = T(mean);
    });
  });
  return py::make_tuple(loss_res, probs_res);
}

py::object softmax_cross_entropy_backward(py::handle probs_obj, py::handle labels_obj, py::handle out_obj) {
  const Array probs = view(probs_obj, "probs"), labels = view(labels_obj, "labels");
  Array dlogits = output_view(out_obj, "out");
  const ops::SoftmaxPlan plan = ops::check_softmax_cross_entropy_backward(probs, labels, dlogits);
  require_host("softmax_cross_entropy_backward", {&probs});
  py::object dlogits_res = result(out_obj, dlogits);
  if (plan.rows > 0)
    without_gil([&] {
      ops::dispatch_float(probs.dtype, [&](auto t) {
        using T = decltype(t);
        cpu::kernels().activations.get<T>().softmax_xent_backward(
            probs.ptr<const T>(), labels.ptr<const void>(), plan.label_bytes, dlogits.ptr<T>(), plan.rows,
            plan.classes, cpu::num_threads());
      });
    });
  return dlogits_res;
}

// name(x, *extra, out) and name_backward(dy, x, *extra, out); params(*extra) checks
// the hyper-parameters and turns them into kernel parameters.
template <class... Extra, class Params>
void def_pair(py::module_& m, const char* name, Activation kind, Params params, const char* doc) {
  const std::string backward_name = std::string(name) + "_backward";
  m.def(name, [name, kind, params](py::handle x, Extra... e, py::handle out) {
    return forward(name, kind, params(e...), x, out);
  }, doc);
  m.def(backward_name.c_str(), [backward_name, kind, params](py::handle dy, py::handle x, Extra... e,
                                                             py::handle out) {
    return backward(backward_name.c_str(), kind, params(e...), dy, x, out);
  });
}

}  // namespace

void bind_activations(py::module_& m) {
  def_pair<>(m, "relu", Activation::relu, &ops::plain_params, "relu(x, out)");
  def_pair<double>(m, "leaky_relu", Activation::leaky_relu, &ops::leaky_relu_params,
                   "leaky_relu(x, negative_slope, out)");
  def_pair<double>(m, "elu", Activation::elu, &ops::elu_params, "elu(x, alpha, out)");
  def_pair<>(m, "selu", Activation::elu, &ops::selu_params, "selu(x, out)");
  m.def("gelu", [](py::handle x, const std::string& approximate, py::handle out) {
    return forward("gelu", ops::gelu_kind(approximate.c_str()), ops::plain_params(), x, out);
  }, "gelu(x, approximate, out)");
  m.def("gelu_backward", [](py::handle dy, py::handle x, const std::string& approximate, py::handle out) {
    return backward("gelu_backward", ops::gelu_kind(approximate.c_str()), ops::plain_params(), dy, x, out);
  });
  def_pair<>(m, "sigmoid", Activation::sigmoid, &ops::plain_params, "sigmoid(x, out)");
  def_pair<>(m, "tanh", Activation::tanh, &ops::plain_params, "tanh(x, out)");
  def_pair<>(m, "silu", Activation::silu, &ops::plain_params, "silu(x, out)");
  def_pair<double, double>(m, "softplus", Activation::softplus, &ops::softplus_params,
                           "softplus(x, beta, threshold, out)");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"), py::arg("loss"),
        py::arg("probs"));
  m.def("softmax_cross_entropy_backward", &softmax_cross_entropy_backward, py::arg("probs"), py::arg("labels"),
        py::arg("out"));
  m.def("_math_eval", &math_eval, py::arg("name"), py::arg("x"), py::arg("out") = py::none(),
        "Testing hook: the vector exp, expm1, log1p, tanh or erf of the SIMD level in use.");
}

}  // namespace bind
}  // namespace fastnn

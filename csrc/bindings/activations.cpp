// Bindings for the activations and softmax cross-entropy: argument checks, then the
// kernel with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"

#include <cmath>
#include <string>
#include <vector>

namespace py = pybind11;

namespace fastnn {
namespace bind {
namespace {

using fastnn::cpu::Activation;
using fastnn::cpu::ActivationParams;
using fastnn::cpu::MathFunction;

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

void require_finite(double v, const char* name) {
  if (!std::isfinite(v))
    throw py::value_error(std::string(name) + " must be a finite number, got " + std::to_string(v));
}

Activation gelu_kind(const std::string& approximate) {
  if (approximate == "none") return Activation::gelu;
  if (approximate == "tanh") return Activation::gelu_tanh;
  throw py::value_error("approximate must be 'none' or 'tanh', got '" + approximate + "'");
}

ActivationParams softplus_params(double beta, double threshold) {
  require_positive(beta, "beta");
  if (std::isnan(threshold)) throw py::value_error("threshold must be a number, got nan");
  return {beta, threshold};
}

// x checked, and y = out (which may be x) or a fresh array of x's shape and dtype.
struct Unary {
  Arg x;
  Float ft;
  Arg y;
};

Unary unary_args(py::handle x_obj, py::handle out_obj) {
  Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  Arg y = output_arg(out_obj, "out", x, shape_of(x.array));
  require_no_overlap({&y}, {&x, &y}, {{"out", "x"}});
  return {x, ft, y};
}

// y = f(x) by call(table, x, y, n, threads), table the kernels of x's lane type; out
// may be x.
template <class Call>
py::array map_unary(py::handle x_obj, py::handle out_obj, const Call& call) {
  const Unary u = unary_args(x_obj, out_obj);
  const int64_t n = u.x.array.size();
  {
    py::gil_scoped_release release;
    const auto& k = fastnn::cpu::kernels();
    const int threads = fastnn::cpu::num_threads();
    if (u.ft == Float::f32)
      call(k.act_f32, u.x.cdata<float>(), u.y.data<float>(), n, threads);
    else
      call(k.act_f64, u.x.cdata<double>(), u.y.data<double>(), n, threads);
  }
  return u.y.array;
}

py::array forward(Activation op, ActivationParams p, py::handle x_obj, py::handle out_obj) {
  return map_unary(x_obj, out_obj, [&](const auto& k, const auto* x, auto* y, int64_t n, int threads) {
    k.forward(op, x, y, n, p, threads);
  });
}

// dx = dy * f'(x); out may be dy or x.
py::array backward(Activation op, ActivationParams p, py::handle dy_obj, py::handle x_obj,
                   py::handle out_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  const Arg dy = ndarray_arg(dy_obj, "dy");
  require_like(dy, x, shape_of(x.array));
  const Arg dx = output_arg(out_obj, "out", x, shape_of(x.array));
  require_no_overlap({&dx}, {&dy, &x, &dx}, {{"out", "dy"}, {"out", "x"}});
  const int64_t n = x.array.size();
  {
    py::gil_scoped_release release;
    const auto& k = fastnn::cpu::kernels();
    const int threads = fastnn::cpu::num_threads();
    if (ft == Float::f32)
      k.act_f32.backward(op, dy.cdata<float>(), x.cdata<float>(), dx.data<float>(), n, p, threads);
    else
      k.act_f64.backward(op, dy.cdata<double>(), x.cdata<double>(), dx.data<double>(), n, p, threads);
  }
  return dx.array;
}

// Testing hook: y = fn(x) by the vector math of the SIMD level in use.
py::array math_eval(const std::string& name, py::handle x_obj, py::handle out_obj) {
  static const char* names[] = {"exp", "expm1", "log1p", "tanh", "erf"};
  int fn = 0;
  while (fn < int(MathFunction::count) && name != names[fn]) ++fn;
  if (fn == int(MathFunction::count))
    throw py::value_error("unknown function '" + name + "'; expected exp, expm1, log1p, tanh or erf");
  return map_unary(x_obj, out_obj, [&](const auto& k, const auto* x, auto* y, int64_t n, int threads) {
    k.math(MathFunction(fn), x, y, n, threads);
  });
}

// labels: int32 or int64, shape (rows,), every value in [0, classes). Returns its width.
int check_labels(const Arg& labels, py::ssize_t rows, py::ssize_t classes) {
  const py::dtype dt = labels.array.dtype();
  int bytes = 0;
  if (dt.equal(py::dtype::of<int32_t>())) bytes = 4;
  else if (dt.equal(py::dtype::of<int64_t>())) bytes = 8;
  else
    throw py::type_error("labels must have dtype int32 or int64 (native byte order), got " +
                         std::string(py::str(dt)));
  require_layout(labels);
  if (shape_of(labels.array) != std::vector<py::ssize_t>{rows})
    throw py::value_error("labels must have shape " + shape_str({rows}) + " (one per row of " +
                          "logits), got " + shape_str(shape_of(labels.array)));
  for (py::ssize_t i = 0; i < rows; ++i) {
    const int64_t v = bytes == 4 ? int64_t(labels.cdata<int32_t>()[i]) : labels.cdata<int64_t>()[i];
    if (v < 0 || v >= classes)
      throw py::value_error("labels[" + std::to_string(i) + "] = " + std::to_string(v) +
                            " is out of range: labels must be in [0, " + std::to_string(classes) + ")");
  }
  return bytes;
}

const Arg logits_arg(py::handle obj, const char* name) {
  const Arg a = ndarray_arg(obj, name);
  float_type(a);
  require_layout(a);
  if (a.array.ndim() != 2)
    throw py::value_error(std::string(name) + " must have shape (N, K), got " + shape_str(shape_of(a.array)));
  return a;
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj, py::handle loss_obj,
                                py::handle probs_obj) {
  const Arg logits = logits_arg(logits_obj, "logits");
  const py::ssize_t rows = logits.array.shape(0), classes = logits.array.shape(1);
  const Arg labels = ndarray_arg(labels_obj, "labels");
  const int label_bytes = check_labels(labels, rows, classes);
  const Arg loss = output_arg(loss_obj, "out (loss)", logits, {});
  const Arg probs = output_arg(probs_obj, "out (probs)", logits, shape_of(logits.array));
  require_no_overlap({&loss, &probs}, {&logits, &labels, &loss, &probs}, {{"out (probs)", "logits"}});
  const bool f32 = float_type(logits) == Float::f32;
  double mean = NAN;  // no rows: the mean of nothing
  {
    py::gil_scoped_release release;
    const auto& k = fastnn::cpu::kernels();
    const int threads = fastnn::cpu::num_threads();
    if (rows > 0) {
      if (f32)
        mean = k.act_f32.softmax_xent(logits.cdata<float>(), labels.cdata<void>(), label_bytes,
                                      probs.data<float>(), rows, classes, threads);
      else
        mean = k.act_f64.softmax_xent(logits.cdata<double>(), labels.cdata<void>(), label_bytes,
                                      probs.data<double>(), rows, classes, threads);
    }
  }
  if (f32)
    *loss.data<float>() = float(mean);
  else
    *loss.data<double>() = mean;
  return py::make_tuple(loss.array, probs.array);
}

py::array softmax_cross_entropy_backward(py::handle probs_obj, py::handle labels_obj, py::handle out_obj) {
  const Arg probs = logits_arg(probs_obj, "probs");
  const py::ssize_t rows = probs.array.shape(0), classes = probs.array.shape(1);
  const Arg labels = ndarray_arg(labels_obj, "labels");
  const int label_bytes = check_labels(labels, rows, classes);
  const Arg dlogits = output_arg(out_obj, "out", probs, shape_of(probs.array));
  require_no_overlap({&dlogits}, {&probs, &labels, &dlogits}, {{"out", "probs"}});
  const bool f32 = float_type(probs) == Float::f32;
  if (rows > 0) {
    py::gil_scoped_release release;
    const auto& k = fastnn::cpu::kernels();
    const int threads = fastnn::cpu::num_threads();
    if (f32)
      k.act_f32.softmax_xent_backward(probs.cdata<float>(), labels.cdata<void>(), label_bytes,
                                      dlogits.data<float>(), rows, classes, threads);
    else
      k.act_f64.softmax_xent_backward(probs.cdata<double>(), labels.cdata<void>(), label_bytes,
                                      dlogits.data<double>(), rows, classes, threads);
  }
  return dlogits.array;
}

// name(x, *extra, out) and name_backward(dy, x, *extra, out); params(*extra) checks
// the hyper-parameters and turns them into kernel parameters.
template <class... Extra, class Params>
void def_pair(py::module_& m, const char* name, Activation op, Params params, const char* doc) {
  m.def(name, [op, params](py::handle x, Extra... e, py::handle out) {
    return forward(op, params(e...), x, out);
  }, doc);
  m.def((std::string(name) + "_backward").c_str(),
        [op, params](py::handle dy, py::handle x, Extra... e, py::handle out) {
          return backward(op, params(e...), dy, x, out);
        });
}

}  // namespace

void bind_activations(py::module_& m) {
  const auto none = [] { return ActivationParams{0, 1}; };
  def_pair<>(m, "relu", Activation::relu, none, "relu(x, out)");
  def_pair<double>(m, "leaky_relu", Activation::leaky_relu, [](double slope) {
    require_finite(slope, "negative_slope");
    return ActivationParams{slope, 1};
  }, "leaky_relu(x, negative_slope, out)");
  def_pair<double>(m, "elu", Activation::elu, [](double alpha) {
    require_finite(alpha, "alpha");
    return ActivationParams{alpha, 1};
  }, "elu(x, alpha, out)");
  def_pair<>(m, "selu", Activation::elu, [] { return ActivationParams{kSeluAlpha, kSeluScale}; }, "selu(x, out)");
  m.def("gelu", [](py::handle x, const std::string& approximate, py::handle out) {
    return forward(gelu_kind(approximate), {0, 1}, x, out);
  }, "gelu(x, approximate, out)");
  m.def("gelu_backward", [](py::handle dy, py::handle x, const std::string& approximate, py::handle out) {
    return backward(gelu_kind(approximate), {0, 1}, dy, x, out);
  });
  def_pair<>(m, "sigmoid", Activation::sigmoid, none, "sigmoid(x, out)");
  def_pair<>(m, "tanh", Activation::tanh, none, "tanh(x, out)");
  def_pair<>(m, "silu", Activation::silu, none, "silu(x, out)");
  def_pair<double, double>(m, "softplus", Activation::softplus, &softplus_params,
                           "softplus(x, beta, threshold, out)");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("loss"), py::arg("probs"));
  m.def("softmax_cross_entropy_backward", &softmax_cross_entropy_backward, py::arg("probs"),
        py::arg("labels"), py::arg("out"));
  m.def("_math_eval", &math_eval, py::arg("name"), py::arg("x"), py::arg("out") = py::none(),
        "Testing hook: the vector exp, expm1, log1p, tanh or erf of the SIMD level in use.");
}

}  // namespace bind
}  // namespace fastnn

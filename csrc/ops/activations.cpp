#include "ops/activations.h"

#include <string>

#include "fastnn/activation_math.h"
#include "ops/check.h"

namespace fastnn {
namespace ops {

ActivationParams plain_params() { return {0, 1}; }

ActivationParams leaky_relu_params(double negative_slope) {
  require_finite(negative_slope, "negative_slope");
  return {negative_slope, 1};
}

ActivationParams elu_params(double alpha) {
  require_finite(alpha, "alpha");
  return {alpha, 1};
}

ActivationParams selu_params() { return {kSeluAlpha, kSeluScale}; }

ActivationParams softplus_params(double beta, double threshold) {
  require_positive(beta, "beta");
  if (threshold != threshold) throw ValueError("threshold must be a number, got nan");
  return {beta, threshold};
}

Activation gelu_kind(const char* approximate) {
  const std::string a = approximate;
  if (a == "none") return Activation::gelu;
  if (a == "tanh") return Activation::gelu_tanh;
  throw ValueError("approximate must be 'none' or 'tanh', got '" + a + "'");
}

MathFunction math_function(const char* name) {
  static const char* names[] = {"exp", "expm1", "log1p", "tanh", "erf"};
  int fn = 0;
  while (fn < int(MathFunction::count) && std::string(name) != names[fn]) ++fn;
  if (fn == int(MathFunction::count))
    throw ValueError("unknown function '" + std::string(name) + "'; expected exp, expm1, log1p, tanh or erf");
  return MathFunction(fn);
}

void check_unary(const Array& x, Array& out) {
  require_one_device({&x, &out});
  require_float(x);
  require_layout(x);
  expect_output(out, x, x.shape);
  require_no_overlap({&out}, {&x, &out}, {{"out", "x"}});
}

void check_unary_backward(const Array& dy, const Array& x, Array& out) {
  require_one_device({&x, &dy, &out});
  require_float(x);
  require_layout(x);
  require_like(dy, x, x.shape);
  expect_output(out, x, x.shape);
  require_no_overlap({&out}, {&dy, &x, &out}, {{"out", "dy"}, {"out", "x"}});
}

namespace {

void require_logits(const Array& a) {
  require_float(a);
  require_layout(a);
  if (a.ndim() != 2) throw ValueError(a.name + " must have shape (N, K), got " + shape_str(a.shape));
}

// labels: int32 or int64, shape (rows,), every value in [0, classes). Returns its width.
int check_labels(const Array& labels, int64_t rows, int64_t classes) {
  int bytes = 0;
  if (labels.dtype == DType::int32) bytes = 4;
  else if (labels.dtype == DType::int64) bytes = 8;
  else
    throw TypeError("labels must have dtype int32 or int64 (native byte order), got " + labels.dtype_name);
  require_layout(labels);
  if (labels.shape != Shape{rows})
    throw ValueError("labels must have shape " + shape_str({rows}) + " (one per row of logits), got " +
                     shape_str(labels.shape));
  // The values are read where they are: host memory here; a device backend checks them
  // in its own kernel.
  if (labels.device != Device::cpu) return bytes;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t v = bytes == 4 ? int64_t(labels.ptr<const int32_t>()[i]) : labels.ptr<const int64_t>()[i];
    if (v < 0 || v >= classes)
      throw ValueError("labels[" + std::to_string(i) + "] = " + std::to_string(v) +
                       " is out of range: labels must be in [0, " + std::to_string(classes) + ")");
  }
  return bytes;
}

}  // namespace

SoftmaxPlan check_softmax_cross_entropy(const Array& logits, const Array& labels, Array& loss,
                                        Array& probs) {
  require_one_device({&logits, &labels, &loss, &probs});
  require_logits(logits);
  const int64_t rows = logits.shape[0], classes = logits.shape[1];
  const int label_bytes = check_labels(labels, rows, classes);
  expect_output(loss, logits, {});
  expect_output(probs, logits, logits.shape);
  require_no_overlap({&loss, &probs}, {&logits, &labels, &loss, &probs}, {{"out (probs)", "logits"}});
  return {rows, classes, label_bytes};
}

SoftmaxPlan check_softmax_cross_entropy_backward(const Array& probs, const Array& labels, Array& dlogits) {
  require_one_device({&probs, &labels, &dlogits});
  require_logits(probs);
  const int64_t rows = probs.shape[0], classes = probs.shape[1];
  const int label_bytes = check_labels(labels, rows, classes);
  expect_output(dlogits, probs, probs.shape);
  require_no_overlap({&dlogits}, {&probs, &labels, &dlogits}, {{"out", "probs"}});
  return {rows, classes, label_bytes};
}

}  // namespace ops
}  // namespace fastnn

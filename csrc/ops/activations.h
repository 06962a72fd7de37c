// The elementwise activations and softmax cross-entropy for every backend: the
// arguments their kernels take, the kernels a backend provides, and the checks a call
// passes first (ops/activations.cpp).
#pragma once
#include <stdint.h>

#include "ops/launch.h"

namespace fastnn {

// Forward y = f(x), backward dx = dy * f'(x), for n values. y may be x; dx may be dy or x.
enum class Activation { relu, leaky_relu, elu, gelu, gelu_tanh, sigmoid, tanh, silu, softplus, count };
struct ActivationParams {
  double a;  // leaky_relu: slope; elu: alpha; softplus: beta
  double b;  // elu: scale (1 for ELU, lambda for SELU); softplus: threshold
};
// The vector math functions, for the accuracy tests (_cpu._math_eval).
enum class MathFunction { exp, expm1, log1p, tanh, erf, count };

template <class T>
struct ActivationKernels {
  void (*forward)(Activation op, const T* x, T* y, int64_t n, ActivationParams p, int threads);
  void (*backward)(Activation op, const T* dy, const T* x, T* dx, int64_t n, ActivationParams p,
                   int threads);
  void (*math)(MathFunction f, const T* x, T* y, int64_t n, int threads);
  // Softmax cross-entropy over rows of logits (rows, classes); labels int32 or int64
  // (label_bytes 4 or 8), already checked in range. Writes probs, returns the mean loss
  // (summed in float64 in row order).
  double (*softmax_xent)(const T* logits, const void* labels, int label_bytes, T* probs,
                         int64_t rows, int64_t classes, int threads);
  // dlogits = (probs - onehot(labels)) / rows; dlogits may be probs.
  void (*softmax_xent_backward)(const T* probs, const void* labels, int label_bytes, T* dlogits,
                                int64_t rows, int64_t classes, int threads);
};
using ActivationTable = PerFloat<ActivationKernels>;

namespace ops {

struct Array;

// The hyper-parameters of each activation, checked.
ActivationParams plain_params();                       // relu, sigmoid, tanh, silu, gelu
ActivationParams leaky_relu_params(double negative_slope);
ActivationParams elu_params(double alpha);
ActivationParams selu_params();
ActivationParams softplus_params(double beta, double threshold);
Activation gelu_kind(const char* approximate);         // "none" or "tanh"
MathFunction math_function(const char* name);          // exp, expm1, log1p, tanh, erf

// name(x) -> out; out may be x.
void check_unary(const Array& x, Array& out);
// name_backward(dy, x) -> out; out may be dy or x.
void check_unary_backward(const Array& dy, const Array& x, Array& out);

struct SoftmaxPlan {
  int64_t rows, classes;
  int label_bytes;  // 4 (int32) or 8 (int64)
};
// softmax_cross_entropy(logits (N, K), labels (N,)) -> loss (0-d), probs (N, K); probs
// may be logits.
SoftmaxPlan check_softmax_cross_entropy(const Array& logits, const Array& labels, Array& loss,
                                        Array& probs);
// softmax_cross_entropy_backward(probs, labels) -> dlogits; dlogits may be probs.
SoftmaxPlan check_softmax_cross_entropy_backward(const Array& probs, const Array& labels, Array& dlogits);

}  // namespace ops
}  // namespace fastnn

// The CPU kernel table: one per instruction set, filled by the kernel sources
// (compiled once per level) and chosen by dispatch.cpp. Plain structs of pointers,
// shared by every level.
#pragma once
#include <stdint.h>

namespace fastnn {
namespace cpu {

// x viewed as (outer, channels, inner). Channels-first (N, C, *spatial) has
// outer = N, inner = prod(spatial); channels-last (N, *spatial, C) and (N, C) have
// inner = 1 and outer = the number of rows.
struct BnShape {
  int64_t outer, channels, inner;
};

template <class T>
struct BnForwardArgs {
  const T* x;
  T* y;                    // may be x
  BnShape shape;
  const T* weight;         // (C,) or null = ones
  const T* bias;           // (C,) or null = zeros
  double eps;              // training: added to the batch variance
  double* mean;            // (C,) training: out, batch mean; eval: in
  double* var;             // (C,) training: out, biased batch variance; unused in eval
  const double* invstd;    // (C,) eval: in; unused in training
  int threads;
};

template <class T>
struct BnBackwardArgs {
  const T* dy;
  const T* x;
  T* dx;                   // may be dy or x
  BnShape shape;
  const T* weight;         // (C,) or null = ones
  const T* mean;           // (C,) saved mean (training) or running mean (eval)
  const T* invstd;         // (C,)
  double* dweight;         // (C,) out: sum(dy * xhat)
  double* dbias;           // (C,) out: sum(dy)
  int threads;
};

template <class T>
struct BatchNormKernels {
  void (*forward_train)(const BnForwardArgs<T>&);
  void (*forward_eval)(const BnForwardArgs<T>&);
  void (*backward_train)(const BnBackwardArgs<T>&);
  void (*backward_eval)(const BnBackwardArgs<T>&);
};

// Streaming loops that measure the memory floor for benchmarks.
struct StreamKernels {
  void (*copy)(const void* src, void* dst, int64_t bytes, int threads);
  double (*read)(const float* src, int64_t n, int threads);               // sum, read only
  void (*add)(const float* a, const float* b, float* out, int64_t n, int threads);  // 2 reads, 1 write
  void (*scale_inplace)(float* const* arrays, int64_t k, int64_t n, float factor, int threads);  // k arrays r+w
};

// Elementwise activations: forward y = f(x), backward dx = dy * f'(x), for n values.
// y may be x; dx may be dy or x.
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

struct KernelTable {
  const char* level;
  BatchNormKernels<float> bn_f32;
  BatchNormKernels<double> bn_f64;
  StreamKernels stream;
  ActivationKernels<float> act_f32;
  ActivationKernels<double> act_f64;
};

}  // namespace cpu
}  // namespace fastnn

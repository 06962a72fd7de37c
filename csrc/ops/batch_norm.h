// Batch norm for every backend: the arguments its kernels take, the kernels a backend
// provides, and the checks a call passes first (ops/batch_norm.cpp).
#pragma once
#include <stdint.h>

#include "ops/launch.h"

namespace fastnn {

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
  bool relu;               // activation='relu': y = max(normalized, 0)
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
  const T* y;              // activation='relu': the forward's y (dy counts where y > 0), else null
};

template <class T>
struct BatchNormKernels {
  void (*forward_train)(const BnForwardArgs<T>&);
  void (*forward_eval)(const BnForwardArgs<T>&);
  void (*backward_train)(const BnBackwardArgs<T>&);
  void (*backward_eval)(const BnBackwardArgs<T>&);
};
using BatchNormTable = PerFloat<BatchNormKernels>;

namespace ops {

struct Array;

struct BnForwardParams {
  bool training;
  double momentum, eps;
  int64_t channel_axis;
  const char* activation;  // "" (None) or "relu"
};
struct BnBackwardParams {
  bool training;
  int64_t channel_axis;
  const char* activation;
};
struct BnPlan {
  BnShape shape;
  bool relu;
};

// batch_norm_forward(x, weight?, bias?, running_mean?, running_var?) -> y, mean, invstd.
// y may be x. In training the running statistics are written in place.
BnPlan check_batch_norm_forward(const Array& x, const Array& weight, const Array& bias,
                                const Array& running_mean, const Array& running_var, Array& y,
                                Array& mean, Array& invstd, const BnForwardParams& p);

// batch_norm_backward(dy, x, weight?, mean, invstd, y?) -> dx, dweight, dbias. y (the
// forward's output) only with activation='relu'. dx may be dy, x or y.
BnPlan check_batch_norm_backward(const Array& dy, const Array& x, const Array& weight,
                                 const Array& mean, const Array& invstd, const Array& y, Array& dx,
                                 Array& dweight, Array& dbias, const BnBackwardParams& p);

}  // namespace ops
}  // namespace fastnn

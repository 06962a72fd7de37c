// The CPU kernel table: one per instruction set, filled by the kernel sources
// (compiled once per level) and chosen by dispatch.cpp. Plain structs of pointers,
// shared by every level.
#pragma once
#include <stdint.h>

#include "fastnn/optim_math.h"

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
  void (*update_inplace)(const float* src, float* const* arrays, int64_t k, int64_t n, int threads);  // src read, k arrays r+w
};

// One optimizer step over a group of `count` parameters (multi-tensor). Tensor i has
// sizes[i] elements; its state arrays are state[k][i] (which k a rule uses: see
// fastnn/optim_math.h), its step-dependent scalars coef[k][i] (float64) and has_state[i]
// (SGD: the momentum buffer exists). Every array is read once and written once.
template <class T>
struct OptimArgs {
  int64_t count;
  const int64_t* sizes;
  T* const* param;
  const T* const* grad;
  T* const* state[3];
  const double* coef[2];
  const unsigned char* has_state;
  fastnn::OptimHyper hyper;
  bool check_finite;  // scan the gradients first; any inf or NaN: write nothing
  int threads;
};

template <class T>
struct OptimKernels {
  bool (*step)(const OptimArgs<T>&);  // false: a gradient held inf or NaN, nothing written
  // True when no element of the count arrays is inf or NaN (read-only pass).
  bool (*all_finite)(const T* const* arrays, const int64_t* sizes, int64_t count, int threads);
};

struct KernelTable {
  const char* level;
  BatchNormKernels<float> bn_f32;
  BatchNormKernels<double> bn_f64;
  StreamKernels stream;
  OptimKernels<float> optim_f32;
  OptimKernels<double> optim_f64;
};

}  // namespace cpu
}  // namespace fastnn

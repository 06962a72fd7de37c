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

// PReLU and Maxout: x viewed as (outer, channels, inner) like BnShape.
template <class T>
struct PreluArgs {
  const T* dy;             // backward only
  const T* x;
  T* out;                  // y (forward) or dx (backward); may be x or dy
  BnShape shape;           // a (1,) weight: (1, 1, n)
  const T* weight;         // (channels,)
  double* dweight;         // backward: (channels,) out, sum(dy * x) over x <= 0
  int threads;
};

template <class T>
struct MaxoutArgs {
  const T* dy;             // backward only: (outer, channels / pieces, inner)
  const T* x;              // (outer, channels, inner)
  T* out;                  // y (outer, channels / pieces, inner), or dx like x (may be x)
  BnShape shape;           // of x
  int64_t pieces;
  int threads;
};

template <class T>
struct ChannelActivationKernels {
  void (*prelu_forward)(const PreluArgs<T>&);
  void (*prelu_backward)(const PreluArgs<T>&);
  void (*maxout_forward)(const MaxoutArgs<T>&);
  void (*maxout_backward)(const MaxoutArgs<T>&);
};

// Streaming loops that measure the memory floor for benchmarks.
struct StreamKernels {
  void (*copy)(const void* src, void* dst, int64_t bytes, int threads);
  double (*read)(const float* src, int64_t n, int threads);               // XOR of the words, read only
  // r arrays read, w written out of place, k read and written in place, one pass
  void (*pass)(const float* const* reads, int64_t r, float* const* writes, int64_t w,
               float* const* inplace, int64_t k, int64_t n, int threads);
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

// Dropout over n elements: y = x * (keep ? scale : 0), keep from the mask rule of
// DESIGN.md (Philox4x32-10 of (seed, offset, i // 4), word i % 4, >= threshold).
enum class MaskSource { generate, load, keep_all, drop_all };

template <class T>
struct DropoutArgs {
  const T* x;                // null: only the mask is wanted
  T* y;                      // may be x
  int64_t n;
  MaskSource source;
  const uint8_t* mask_in;    // source load: (n + 7) / 8 bytes, bit i % 8 of byte i / 8
  uint8_t* mask_out;         // null: not stored; else written, bits past n cleared
  uint64_t seed, offset;     // source generate
  uint32_t threshold;        // source generate: kept iff word >= threshold
  T scale;                   // the factor of kept elements
  int threads;
};

struct DropoutKernels {
  void (*f32)(const DropoutArgs<float>&);
  void (*f64)(const DropoutArgs<double>&);
  // Philox words of blocks first, ..., first + blocks - 1: out[4 * k + w] (for tests).
  void (*philox)(uint64_t seed, uint64_t offset, uint64_t first, int64_t blocks, uint32_t* out);
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
  DropoutKernels dropout;
  ChannelActivationKernels<float> chact_f32;
  ChannelActivationKernels<double> chact_f64;
  ActivationKernels<float> act_f32;
  ActivationKernels<double> act_f64;
  OptimKernels<float> optim_f32;
  OptimKernels<double> optim_f64;
};

}  // namespace cpu
}  // namespace fastnn

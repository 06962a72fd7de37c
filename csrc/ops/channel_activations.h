// PReLU and Maxout for every backend: the arguments their kernels take, the kernels a
// backend provides, and the checks a call passes first (ops/channel_activations.cpp).
// Both view x as (outer, channels, inner) around its channel axis (BnShape).
#pragma once
#include <stdint.h>

#include "ops/launch.h"

namespace fastnn {

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
using ChannelActivationTable = PerFloat<ChannelActivationKernels>;

namespace ops {

struct Array;

constexpr const char* kPiecesRule = "an integer in [1, 2**24]";

// prelu(x, weight (1,) or (C,)) -> y; y may be x.
BnShape check_prelu(const Array& x, const Array& weight, int64_t channel_axis, Array& y);
// prelu_backward(dy, x, weight) -> dx, dweight; dx may be dy or x.
BnShape check_prelu_backward(const Array& dy, const Array& x, const Array& weight, int64_t channel_axis,
                             Array& dx, Array& dweight);
// maxout(x, pieces) -> y with C / pieces channels; y can't be x.
BnShape check_maxout(const Array& x, int64_t pieces, int64_t channel_axis, Array& y);
// maxout_backward(dy, x, pieces) -> dx; dx may be x.
BnShape check_maxout_backward(const Array& dy, const Array& x, int64_t pieces, int64_t channel_axis,
                              Array& dx);

}  // namespace ops
}  // namespace fastnn

// Math of the activations with a channel axis (PReLU, Maxout), shared by the CPU and
// CUDA kernels. V is a scalar T or a GCC vector of T (the CPU calls these per native
// register); comparisons then give lane masks and `?:` selects per lane.
#pragma once
#include "fastnn/config.h"

FASTNN_NAMESPACE_BEGIN

// PReLU: y = x if x > 0 else w * x. NaN in x gives NaN (w * NaN).
template <class V, class W>
FASTNN_HD V prelu_value(V x, W w) {
  return x > 0 ? x : w * x;
}

// dL/dx = dy if x > 0 else w * dy.
template <class V, class W>
FASTNN_HD V prelu_grad_x(V dy, V x, W w) {
  return x > 0 ? dy : w * dy;
}

// The term x contributes to dL/dw: 0 if x > 0 else x * dy (callers sum it in float64).
template <class V>
FASTNN_HD V prelu_grad_weight_term(V dy, V x) {
  return x > 0 ? V{} : x * dy;
}

// Maxout: does candidate v replace the running maximum m of its group? Strictly greater
// (so the first index wins a tie, -0 and +0 included), or the first NaN: a NaN in a
// group makes the output NaN and takes the gradient, as torch.max does.
template <class V>
FASTNN_HD auto maxout_takes(V v, V m) -> decltype(v > m) {
  return (v > m) | ((v != v) & (m == m));
}

FASTNN_NAMESPACE_END

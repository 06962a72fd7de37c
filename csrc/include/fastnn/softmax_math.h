// Softmax cross-entropy math shared by the CPU and CUDA kernels. V is float or double,
// or a CPU vector of them (fastnn/activation_math.h lists what V needs).
#pragma once
#include "fastnn/activation_math.h"

FASTNN_NAMESPACE_BEGIN

// exp(z) for z = logit - row max, so z <= 0 (or NaN): bit for bit vexp(z), without the
// clamp and the branch that only z > 0 needs. 2^k is applied as 2^(k + kScale) *
// 2^-kScale, so results down to the smallest denormal come from one rounding.
template <class V> FASTNN_VM V softmax_exp(V z) {
  typedef typename Lane<V>::type T;
  z = vmax(z, Fmt<T>::kExpLo);  // NaN stays
  V t, k, r;
  exp_reduce(z, t, k, r);
  return ((expm1_reduced(r) + T(1)) * pow2_from_rounded(t + Fmt<T>::kScale)) * Fmt<T>::kSmall;
}

// A row's loss, in float64, from its max m, the sum s of exp(x - m) (s >= 1: the max
// contributes exp(0) = 1; or NaN) and the label's logit: m + log(s) - x[label]. log(s)
// is log1p(s - 1), and s - 1 is exact for s >= 1, so the log1p correction term is 0.
template <class V> FASTNN_VM V softmax_row_loss(const V& m, const V& s, const V& label_logit) {
  return (m + log1p_finite(s - 1.0)) - label_logit;
}

FASTNN_NAMESPACE_END

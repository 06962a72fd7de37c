// Batch norm on the CPU: what the planes and rows layouts share (compiled into each,
// once per instruction set): optional weight and bias, the fused ReLU's lane helpers,
// and the per-channel finish of the forward and backward. Layouts: batch_norm.cpp.
#pragma once
#include <stdint.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/bn_math.h"

FASTNN_CPU_NAMESPACE_BEGIN

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
template <class T> inline double weight_at(const T* w, int64_t c) { return w ? double(w[c]) : 1.0; }
template <class T> inline double bias_at(const T* b, int64_t c) { return b ? double(b[c]) : 0.0; }

// activation='relu' (fastnn/bn_math.h), chosen at compile time: kRelu = false is the
// plain batch norm, bit for bit.
template <bool kRelu, class T>
inline Vec16<T> activate(const Vec16<T>& z) {
  if (!kRelu) return z;
  return lanewise<T>([&](int k) { return bn_relu(z.r[k]); });
}
template <bool kRelu, class T>
inline T activate(T z) {
  return kRelu ? bn_relu(z) : z;
}

// The gradient the batch norm sees: dy, or with the ReLU dy where the forward's y > 0.
// y is the mask stream: a.y with the ReLU, else any valid pointer (dy), never read.
template <bool kRelu, class T>
inline const T* mask_stream(const BnBackwardArgs<T>& a) {
  return kRelu ? a.y : a.dy;
}
template <bool kRelu, class T>
inline Vec16<T> masked16(const Vec16<T>& dy, const Vec16<T>& y) {
  if (!kRelu) return dy;
  return lanewise<T>([&](int k) { return bn_relu_grad(dy.r[k], y.r[k]); });
}
template <bool kRelu, class T>
inline Vec16<T> grad16(const T* dy, const T* y) {
  return masked16<kRelu>(load16(dy), kRelu ? load16(y) : Vec16<T>{});
}
template <bool kRelu, class T>
inline Vec16<double> grad16_f64(const T* dy, const T* y) {
  return masked16<kRelu>(load16_f64(dy), kRelu ? load16_f64(y) : Vec16<double>{});
}
template <bool kRelu, class T>
inline Vec16<double> grad_tail16_f64(const T* dy, const T* y, int64_t n) {
  return masked16<kRelu>(load_tail16_f64(dy, n), kRelu ? load_tail16_f64(y, n) : Vec16<double>{});
}
template <bool kRelu, class T>
inline T grad1(const T* dy, const T* y) {
  return kRelu ? bn_relu_grad(*dy, *y) : *dy;
}

inline void add_sums(BackwardSums& a, const BackwardSums& b) {
  a.sum_dy += b.sum_dy;
  a.sum_dy_xc += b.sum_dy_xc;
  a.sum_xc += b.sum_xc;
}

template <class T>
NormalizeParams<T> finish_forward_channel(const BnForwardArgs<T>& a, int64_t c, double shift,
                                          const ChunkStats& st) {
  const double mean = shift + st.shifted_mean;
  const double var = st.m2 / st.n;
  a.mean[c] = mean;
  a.var[c] = var;
  return normalize_params<T>(mean, bn_invstd(var, a.eps), weight_at(a.weight, c),
                             bias_at(a.bias, c));
}

template <class T>
BackwardParams<T> finish_backward_channel(const BnBackwardArgs<T>& a, int64_t c, double count,
                                          const BackwardSums& s) {
  return backward_train_params<T>(s, count, double(a.mean[c]), double(a.invstd[c]),
                                  weight_at(a.weight, c), &a.dweight[c], &a.dbias[c]);
}

// Eval backward: dbias = sum(dy), dweight = sum(dy * (x - mean)) * invstd.
template <class T>
void store_eval_backward(const BnBackwardArgs<T>& a, int64_t c, const BackwardSums& total) {
  a.dbias[c] = total.sum_dy;
  a.dweight[c] = total.sum_dy_xc * double(a.invstd[c]);
}

// The layouts' entry points (batch_norm_planes.cpp, batch_norm_rows.cpp) for T = float
// and double; each picks the fused-ReLU variant itself (a.relu, a.y).
template <class T> void planes_forward_train(const BnForwardArgs<T>& a);
template <class T> void planes_forward_eval(const BnForwardArgs<T>& a);
template <class T> void planes_backward_train(const BnBackwardArgs<T>& a);
template <class T> void planes_backward_eval(const BnBackwardArgs<T>& a);
template <class T> void rows_forward_train(const BnForwardArgs<T>& a);
template <class T> void rows_forward_eval(const BnForwardArgs<T>& a);
template <class T> void rows_backward_train(const BnBackwardArgs<T>& a);
template <class T> void rows_backward_eval(const BnBackwardArgs<T>& a);

FASTNN_CPU_NAMESPACE_END

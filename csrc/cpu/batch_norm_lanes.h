// Batch norm on the CPU: what the planes and rows layouts share (compiled into each,
// once per instruction set): optional weight and bias, the fused ReLU's lane helpers,
// and the per-channel finish of the forward and backward. Layouts: batch_norm.cpp.
#pragma once
#include <stdint.h>
#include <string.h>

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

// f(Flag<stream>{}, Flag<relu>{}): the kernel variant for a streamed or cached output
// pass, with or without the fused ReLU, chosen at compile time.
template <bool b> struct Flag {
  static constexpr bool value = b;
};
template <class F>
inline void with_variant(bool stream, bool relu, const F& f) {
  if (stream) relu ? f(Flag<true>{}, Flag<true>{}) : f(Flag<true>{}, Flag<false>{});
  else relu ? f(Flag<false>{}, Flag<true>{}) : f(Flag<false>{}, Flag<false>{});
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

// The fused ReLU backward keeps its mask between the two passes as bits: the first
// pass reads y and writes bit l of a 16-bit word for lane l (y > 0), the second reads
// the words (1/32 of y's bytes for float32). Words sit where the layout puts a run's
// vectors; bits_at reads the 16 bits from any bit position (the mask array has one
// word of padding at its end).
template <class T>
inline uint32_t lane_bits16(const Mask16<T>& m) {  // bit l = lane l of m is true
  constexpr int kPer = Vec16<T>::kPerRegister;
  uint32_t bits = 0;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) {
    uint32_t b;
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) b = _mm512_movepi32_mask(__m512i(m.r[k]));
    else b = _mm512_movepi64_mask(__m512i(m.r[k]));
#elif defined(__AVX__)
    if constexpr (sizeof(T) == 4) b = _mm256_movemask_ps(__m256(m.r[k]));
    else b = _mm256_movemask_pd(__m256d(m.r[k]));
#elif defined(__SSE2__)
    if constexpr (sizeof(T) == 4) b = _mm_movemask_ps(__m128(m.r[k]));
    else b = _mm_movemask_pd(__m128d(m.r[k]));
#else
    b = 0;
    for (int l = 0; l < kPer; ++l) b |= uint32_t(m.r[k][l] != 0) << l;
#endif
    bits |= b << (k * kPer);
  }
  return bits;
}

// v where bit l of bits is set, +0 elsewhere: bn_relu_grad(v, y) for the bits of y.
template <class T>
inline Vec16<T> keep_bits16(uint32_t bits, const Vec16<T>& v) {
  constexpr int kPer = Vec16<T>::kPerRegister;
#if defined(__AVX512F__)
  return lanewise<T>([&](int k) {
    typedef typename Vec16<T>::Register R;
    if constexpr (sizeof(T) == 4) return R(_mm512_maskz_mov_ps(__mmask16(bits), __m512(v.r[k])));
    else return R(_mm512_maskz_mov_pd(__mmask8(bits >> (k * kPer)), __m512d(v.r[k])));
  });
#else
  typedef typename Mask16<T>::Register M;
  typedef typename Mask16<T>::Int I;
  static const I kLaneBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                 8192, 16384, 32768};
  M lane_bit;
  memcpy(&lane_bit, kLaneBit, sizeof lane_bit);
  return lanewise<T>([&](int k) {
    const M b = M{} + I(bits >> (k * kPer));
    return ((b & lane_bit) != 0) ? v.r[k] : typename Vec16<T>::Register{};
  });
#endif
}

// The fused ReLU's gradient in a sums pass: dy where y > 0, +0 elsewhere, in T (one
// compare), with the compare's lane bits; and widened to float64.
template <class T>
inline Vec16<T> relu_masked16(const T* dy, const T* y, uint32_t& bits) {
  const Mask16<T> pos = load16(y) > T(0);
  bits = lane_bits16(pos);
  return vselect(pos, load16(dy), T(0));
}
template <class T>
inline Vec16<double> widen16(const Vec16<T>& v) {
  T buf[kLanes];
  store16(buf, v);
  return load16_f64(buf);
}

// The 16 mask bits from bit position `bit` on (words of 16 bits, little end first).
inline uint32_t bits_at(const uint16_t* mask, int64_t bit) {
  const uint16_t* w = mask + (bit >> 4);
  return ((uint32_t(w[0]) | uint32_t(w[1]) << 16) >> (bit & 15)) & 0xffffu;
}

// out[i] for i < len: vec(i) gives the 16 values at i, one(i) a single value (only for
// runs shorter than 16). A run that doesn't end on a vector boundary ends with the
// vector at len - 16, computed before anything it reads is written (out may be an
// input). With kStream, the vectors from out's first cache line boundary on are streamed
// past the cache, and the values before it come from vec(0) (the caller calls
// stream_fence() before its task ends). The values don't depend on the path.
template <bool kStream, class T, class VecF, class OneF>
FASTNN_RUN_LOOP inline void write_run(T* out, int64_t len, const VecF& vec, const OneF& one) {
  if (len < kLanes) {
    for (int64_t i = 0; i < len; ++i) out[i] = one(i);
    return;
  }
  int64_t i = 0;
  const int64_t head = kStream ? values_to_alignment(out) : -1;
  if (len % kLanes == 0 && head == 0) {  // whole vectors, no head: no ragged end to guard
    for (; i < len; i += kLanes) stream16(out + i, vec(i));
    return;
  }
  if (len % kLanes == 0 && head < 0) {
    for (; i < len; i += kLanes) store16(out + i, vec(i));
    return;
  }
  const int64_t last = len - kLanes;
  const Vec16<T> end = vec(last);  // the last 16 values, read before anything is written
  if (head >= 0 && head <= last) {
    if (head > 0) {
      T first[kLanes];
      store16(first, vec(0));
      memcpy(out, first, sizeof(T) * head);
      i = head;
    }
    for (; i <= last; i += kLanes) stream16(out + i, vec(i));
  } else {
    for (; i <= last; i += kLanes) store16(out + i, vec(i));
  }
  if (i < len) {  // the values [i, len) are the last lanes of `end`
    T tail[kLanes];
    store16(tail, end);
    memcpy(out + i, tail + (i - last), sizeof(T) * (len - i));
  }
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

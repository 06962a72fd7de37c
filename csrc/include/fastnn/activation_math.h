// Vector math and activation functors shared by the CPU and CUDA kernels.
//
// Every function is written once over a value type V: float or double (CUDA, and the
// CPU's scalar tails) or Vec16<float> / Vec16<double> (cpu/simd.h). V needs + - * /,
// comparisons giving a mask, vselect(mask, a, b), and bits_of / from_bits with integer
// + - & | << >> on the bits, and fmadd(a, b, c) = a * b + c rounded once. No libm call
// but fma: the same operations in the same order give the same bits on every SIMD
// level, the scalar tail and (with the compiler's own FMA contraction off) the GPU.
//
// Accuracy (tests/test_activations.py sweeps it): exp, expm1, log1p, tanh and erf are
// within 4 ulp in float32 and 1e-14 relative in float64, over the whole range,
// including +-0, denormals, +-inf and NaN.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastnn/config.h"
#include "ops/activations.h"  // Activation, ActivationParams

// Forced inline on the CPU: a Vec16 returned from a call that isn't inlined goes
// through memory, which costs more than the math.
#if defined(__CUDACC__) || !defined(__GNUC__)
#define FASTNN_VM FASTNN_HD
#else
#define FASTNN_VM inline __attribute__((always_inline))
#endif

FASTNN_NAMESPACE_BEGIN

// The lane type of V: T for Vec16<T> (any one-parameter vector template), else V.
template <class V> struct Lane { typedef V type; };
template <template <class> class W, class T> struct Lane<W<T>> { typedef T type; };

// ------------------------------------------------------------------ scalar primitives

// The bits of a float or double and back (memcpy: defined behaviour, one move on the
// CPU and the GPU).
template <class To, class From>
FASTNN_HD To bit_cast_to(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast_to needs types of one size");
  To out;
  memcpy(&out, &x, sizeof out);
  return out;
}
FASTNN_HD uint32_t bits_of(float x) { return bit_cast_to<uint32_t>(x); }
FASTNN_HD uint64_t bits_of(double x) { return bit_cast_to<uint64_t>(x); }
FASTNN_HD float from_bits(uint32_t u) { return bit_cast_to<float>(u); }
FASTNN_HD double from_bits(uint64_t u) { return bit_cast_to<double>(u); }

// a * b + c with one rounding. Written out where the formulas want it, never left to
// the compiler's contraction (which would differ between levels): the polynomials and
// reductions cost half the operations, and the GPU has the same instruction.
FASTNN_HD float fmadd(float a, float b, float c) { return fmaf(a, b, c); }
FASTNN_HD double fmadd(double a, double b, double c) { return fma(a, b, c); }
FASTNN_HD float vselect(bool m, float a, float b) { return m ? a : b; }
FASTNN_HD double vselect(bool m, double a, double b) { return m ? a : b; }

// Constants of the two formats. The reduction constants: ln2 = ln2_hi + ln2_lo with
// ln2_hi short enough that k * ln2_hi is exact for every k the exponent range needs.
template <class T> struct Fmt;
template <> struct Fmt<float> {
  typedef uint32_t U;
  static constexpr int kMantissa = 23;
  static constexpr U kBias = 127;
  static constexpr U kSign = 0x80000000u;
  static constexpr U kHighHalf = 0xfffff000u;  // keeps 12 significant bits: squares exact
  static constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: x + kRound rounds x to an integer
  static constexpr float kLn2Hi = 0.693359375f;
  static constexpr float kLn2Lo = -2.12194440e-4f;
  static constexpr float kExpLo = -104.0f, kExpHi = 89.0f;  // exp is 0 / inf beyond
  static constexpr float kExpm1Lo = -30.0f;                 // expm1 is -1 below
  static constexpr float kNormalExpLo = -87.6f;  // below: exp < smallest normal; above: 2^k normal
  static constexpr float kTiny = 0x1p-25f;                  // expm1(x) = x below
  static constexpr U kInf = 0x7f800000u;
  static constexpr float kScale = 64.0f;  // 2^k = 2^(k -+ 64) * 2^(+-64)
  static constexpr int kScaleBits = 64;
  static constexpr float kBig = 0x1p64f, kSmall = 0x1p-64f;
  static constexpr float kExpScaledLo = -130.0f;  // exp_scaled's floor: 2^(k + 64) still normal
  static constexpr float kTinyScaled = 0x1p-62f;   // the smallest normal, times 2^64
};
template <> struct Fmt<double> {
  typedef uint64_t U;
  static constexpr int kMantissa = 52;
  static constexpr U kBias = 1023;
  static constexpr U kSign = 0x8000000000000000ull;
  static constexpr U kHighHalf = 0xfffffffff8000000ull;  // 26 significant bits
  static constexpr double kRound = 6755399441055744.0;    // 1.5 * 2^52
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kExpLo = -746.0, kExpHi = 710.0;
  static constexpr double kExpm1Lo = -40.0;
  static constexpr double kNormalExpLo = -708.7;
  static constexpr double kTiny = 0x1p-54;
  static constexpr U kInf = 0x7ff0000000000000ull;
  static constexpr double kScale = 512.0;
  static constexpr int kScaleBits = 512;
  static constexpr double kBig = 0x1p512, kSmall = 0x1p-512;
  static constexpr double kExpScaledLo = -1060.0;
  static constexpr double kTinyScaled = 0x1p-510;
};

// c0 + x * (c1 + x * (c2 + ...)), coefficients rounded to the lane type.
template <class T, class V>
FASTNN_VM V poly(const V& x, double c0, double c1) {
  return fmadd(x, T(c1), T(c0));
}
template <class T, class V, class... C>
FASTNN_VM V poly(const V& x, double c0, double c1, C... rest) {
  return fmadd(poly<T>(x, c1, rest...), x, T(c0));
}

template <class V> FASTNN_VM V vmin(const V& a, typename Lane<V>::type b) { return vselect(a > b, b, a); }  // NaN stays
template <class V> FASTNN_VM V vmax(const V& a, typename Lane<V>::type b) { return vselect(a < b, b, a); }  // NaN stays

template <class V> FASTNN_VM V vabs(const V& x) {
  typedef typename Lane<V>::type T;
  return from_bits(bits_of(x) & typename Fmt<T>::U(~Fmt<T>::kSign));
}
// |mag| with the sign of s.
template <class V> FASTNN_VM V copysign_of(const V& mag, const V& s) {
  typedef typename Lane<V>::type T;
  return from_bits((bits_of(mag) & typename Fmt<T>::U(~Fmt<T>::kSign)) |
                   (bits_of(s) & typename Fmt<T>::U(Fmt<T>::kSign)));
}

// 2^(j + kOffset) from t = j + kRound (j + kOffset an integer in the normal exponent
// range): the low bits of t hold j, shifted into the exponent field.
template <int kOffset = 0, class V> FASTNN_VM V pow2_from_rounded(const V& t) {
  typedef typename Lane<V>::type T;
  typedef typename Fmt<T>::U U;
  const U round_bits = bits_of(Fmt<T>::kRound);
  return from_bits((bits_of(t) + U(Fmt<T>::kBias + kOffset - round_bits)) << Fmt<T>::kMantissa);
}

// expm1 on the reduced range |r| <= ln2/2 (Taylor: 7 terms float32, 13 float64).
// kShort (the activations): float32 r + r^2 q with q of 5 terms fitted (coefficients
// rounded one at a time; expm1 2.5e-8 relative, exp 1.1e-8); float64 as full.
template <bool kShort = false, class V> FASTNN_VM V expm1_reduced(const V& r) {
  typedef typename Lane<V>::type T;
  V q;
  if (sizeof(T) == 4 && kShort)
    q = poly<T>(r, 0.5, 0.16666576266288757, 0.041666507720947266, 0.008363285101950169,
                0.0013930891873314977);
  else if (sizeof(T) == 4)
    q = poly<T>(r, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040);
  else
    q = poly<T>(r, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
                1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600,
                1.0 / 6227020800.0);
  return fmadd(r * r, q, r);
}

// exp(r) - 1 on the reduced range, as the activations' exp needs it: kFine, the float32
// expm1_reduced<true> (exp 1.1e-8 relative); else float32 r + r^2 q with q of 4 terms
// fitted for the relative error of exp (near-minimax, coefficients rounded one at a time;
// 1.1e-7), one operation less, for functions whose other errors leave room for it.
// float64: expm1_reduced.
template <bool kFine, class V> FASTNN_VM V exp_reduced_m1(const V& r) {
  typedef typename Lane<V>::type T;
  if (sizeof(T) == 8 || kFine) return expm1_reduced<true>(r);
  return fmadd(r * r, poly<T>(r, 0.4999922811985016, 0.16667120158672333, 0.041890699416399,
                              0.008312189020216465), r);
}

// x = k ln2 + r: t = k + kRound (integer-valued), r (|r| <= ln2/2 + rounding).
template <class V> FASTNN_VM void exp_reduce(const V& x, V& t, V& k, V& r) {
  typedef typename Lane<V>::type T;
  t = fmadd(x, T(1.4426950408889634), Fmt<T>::kRound);
  k = t - Fmt<T>::kRound;
  r = fmadd(k, -Fmt<T>::kLn2Lo, fmadd(k, -Fmt<T>::kLn2Hi, x));
}

// (1 + p) * 2^k, with 2^k split in two so that results down to the smallest denormal
// and up to the overflow threshold come out of one final rounding.
template <class V> FASTNN_VM V scale_exp(const V& p, const V& t, const V& k) {
  typedef typename Lane<V>::type T;
  const V c = vselect(k < T(0), -Fmt<T>::kScale, Fmt<T>::kScale);
  const V pc = vselect(k < T(0), Fmt<T>::kSmall, Fmt<T>::kBig);
  return ((p + T(1)) * pow2_from_rounded(t - c)) * pc;
}

template <class V> FASTNN_VM V vexp(V x) {
  typedef typename Lane<V>::type T;
  x = vmax(vmin(x, Fmt<T>::kExpHi), Fmt<T>::kExpLo);
  V t, k, r;
  exp_reduce(x, t, k, r);
  return scale_exp(expm1_reduced(r), t, k);
}

// exp(x + lo) * 2^kScaleBits = (1 + p) * scale, for kExpScaledLo <= x <= 0 (or NaN: the
// callers cap or clamp their argument) and lo a correction below an ulp of x (the low
// part of an argument carried in two pieces), as the activations need it: |p| < 0.42 and
// scale a power of 2. The scale keeps 2^k normal down to kExpScaledLo, far below the
// smallest denormal, so the caller scales back by kSmall once, at the end: a denormal
// result is rounded once, and a normal result made from a denormal exp (x * exp(x) near
// the underflow) keeps its digits. The short polynomial (float32 relative error 1.1e-8).
template <bool kFine = true, class V>
FASTNN_VM void exp_scaled_parts(const V& x, const V& lo, V& p, V& scale) {
  typedef typename Lane<V>::type T;
  V t, k, r;
  exp_reduce(x, t, k, r);
  p = exp_reduced_m1<kFine>(r + lo);
  scale = pow2_from_rounded<Fmt<T>::kScaleBits>(t);
}
template <bool kFine = true, class V> FASTNN_VM void exp_scaled_parts(const V& x, V& p, V& scale) {
  typedef typename Lane<V>::type T;
  V t, k, r;
  exp_reduce(x, t, k, r);
  p = exp_reduced_m1<kFine>(r);
  scale = pow2_from_rounded<Fmt<T>::kScaleBits>(t);
}
template <class V> FASTNN_VM V clamp_scaled_exp_arg(const V& x) {
  typedef typename Lane<V>::type T;
  return vmax(x, Fmt<T>::kExpScaledLo);
}

// Back from exp_scaled's scale: v_s * 2^-kScaleBits for v_s >= 0, NaN kept, with results
// below the smallest normal flushed to zero instead of computed: on x86 an operation that
// gives a denormal costs a microcode assist (a hundred cycles and more), and these are
// the left tails' results. (Where the tail starts at a known x, the callers zero the
// scale there instead: the same, cheaper.)
template <class V> FASTNN_VM V unscale_pos(const V& v_s) {
  typedef typename Lane<V>::type T;
  return vselect(v_s < Fmt<T>::kTinyScaled, T(0), v_s) * Fmt<T>::kSmall;
}
// scale * 2^-kScaleBits, raised to twice the smallest normal where it is below: e = (1 +
// p) times it stays normal (no assist) and, where it was raised, is still negligible
// next to 1, which is all the callers add it to.
template <class V> FASTNN_VM V unscale_floor(const V& scale) {
  typedef typename Lane<V>::type T;
  return vmax(scale, Fmt<T>::kTinyScaled * T(2)) * Fmt<T>::kSmall;
}

// exp(x) for x <= 0 (or NaN), for results no larger than the caller's: one scaling (2^k
// normal), and results below the smallest normal may be flushed to zero (from x below
// kNormalExpLo, where k would leave the normal range).
template <bool kFine = true, class V> FASTNN_VM V vexp_nonpos(const V& x, const V& lo) {
  typedef typename Lane<V>::type T;
  V t, k, r;
  exp_reduce(x, t, k, r);
  const V y = (exp_reduced_m1<kFine>(r + lo) + T(1)) * pow2_from_rounded(t);
  return vselect(x < Fmt<T>::kNormalExpLo, T(0), y);
}
template <bool kFine = true, class V> FASTNN_VM V vexp_nonpos(const V& x) {
  typedef typename Lane<V>::type T;
  V t, k, r;
  exp_reduce(x, t, k, r);
  const V y = (exp_reduced_m1<kFine>(r) + T(1)) * pow2_from_rounded(t);
  return vselect(x < Fmt<T>::kNormalExpLo, T(0), y);
}

// -|x| (the sign bit set).
template <class V> FASTNN_VM V neg_abs(const V& x) {
  typedef typename Lane<V>::type T;
  return from_bits(bits_of(x) | Fmt<T>::kSign);
}

// expm1(x) for x <= 0 (or NaN): 2^k expm1(r) + (2^k - 1), 2^k normal.
template <bool kShort = false, class V> FASTNN_VM V vexpm1_nonpos(const V& x) {
  typedef typename Lane<V>::type T;
  V t, k, r;
  exp_reduce(vmax(x, Fmt<T>::kExpm1Lo), t, k, r);
  const V scale = pow2_from_rounded(t);
  return fmadd(expm1_reduced<kShort>(r), scale, scale - T(1));
}

// exp(-s * x^2) for s = 1 or 1/2, with x^2 carried in two parts (x = xh + xl, xh of
// half the mantissa so xh^2 is exact): a rounded x^2 would cost |x^2| ulps. |x| <= 40.
template <class V> FASTNN_VM V exp_neg_sq(const V& x, typename Lane<V>::type s) {
  typedef typename Lane<V>::type T;
  const V xh = from_bits(bits_of(x) & Fmt<T>::kHighHalf);
  const V xl = x - xh;
  const V hi = (xh * xh) * (-s);
  const V lo = (xl * (x + xh)) * (-s);
  V t, k, r;
  exp_reduce(hi, t, k, r);
  const V y = (expm1_reduced(r + lo) + T(1)) * pow2_from_rounded(t);
  return vselect(hi < Fmt<T>::kNormalExpLo, T(0), y);
}

// expm1(x) = 2^k * (expm1(r) + 1 - 2^-k); 1 - 2^-k is exact while it matters.
template <class V> FASTNN_VM V vexpm1(const V& x) {
  typedef typename Lane<V>::type T;
  const V xc = vmax(vmin(x, Fmt<T>::kExpHi), Fmt<T>::kExpm1Lo);
  V t, k, r;
  exp_reduce(xc, t, k, r);
  const V s = T(1) - pow2_from_rounded((T(2) * Fmt<T>::kRound - vmin(t, Fmt<T>::kRound + 64)));
  const V q = expm1_reduced(r) - r;  // r^2 * poly
  const V y = (((s + r) + q) * pow2_from_rounded(t - T(1))) * T(2);
  return vselect(vabs(x) < Fmt<T>::kTiny, x, y);
}

// log(1 + f) for 1 + f in [sqrt(1/2), sqrt(2)): 2 atanh(s), s = f / (2 + f), as
// 2s + s^3 q(s^2) with q the series' tail.
template <class V> FASTNN_VM V log_one_plus(const V& f) {
  typedef typename Lane<V>::type T;
  const V s = f / (f + T(2));
  const V z = s * s;
  V q;
  if (sizeof(T) == 4)
    q = poly<T>(z, 2.0 / 3, 2.0 / 5, 2.0 / 7, 2.0 / 9, 2.0 / 11);
  else
    q = poly<T>(z, 2.0 / 3, 2.0 / 5, 2.0 / 7, 2.0 / 9, 2.0 / 11, 2.0 / 13, 2.0 / 15, 2.0 / 17,
                2.0 / 19, 2.0 / 21, 2.0 / 23);
  return s * T(2) + (s * z) * q;
}

// log1p(x) = log(u) + (x - (u - 1)) / u for u = 1 + x rounded; log(u) = e ln2 + log(m),
// m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(f / (2 + f)) with f = m - 1. For finite
// x > -1 (and NaN); vlog1p adds the special cases.
template <class V> FASTNN_VM V log1p_finite(const V& x) {
  typedef typename Lane<V>::type T;
  typedef typename Fmt<T>::U U;
  const V u = x + T(1);
  const U one = bits_of(T(1)), sqrt_half = bits_of(T(0.70710678118654752440));
  const auto b = bits_of(u) + U(one - sqrt_half);
  const U int_magic = bits_of(T(U(1) << Fmt<T>::kMantissa));  // 2^mantissa
  const V e = (from_bits((b >> Fmt<T>::kMantissa) | int_magic) - T(U(1) << Fmt<T>::kMantissa)) -
              T(Fmt<T>::kBias);
  const V m = from_bits((b & U((U(1) << Fmt<T>::kMantissa) - 1)) + sqrt_half);
  const V f = m - T(1);
  const V log_m = log_one_plus(f);
  const V c = (x - (u - T(1))) / u;
  return (log_m + (c + e * Fmt<T>::kLn2Lo)) + e * Fmt<T>::kLn2Hi;
}

// log1p(y) for y in [0, 1] (or NaN), as softplus needs it: u = 1 + y is in [1, 2], so
// the exponent is 0 or 1 (m = u or u / 2), and 1 / u in the rounding correction may be
// approximated by 2 - u (the correction is below an ulp of the result).
template <class V> FASTNN_VM V log1p_unit(const V& y) {
  typedef typename Lane<V>::type T;
  const V u = y + T(1);
  const V c = (y - (u - T(1))) * (T(2) - u);
  const auto big = u > T(1.4142135623730951);
  const V f = vselect(big, u * T(0.5), u) - T(1);
  const V log_m = log_one_plus(f);
  return (log_m + (c + vselect(big, Fmt<T>::kLn2Lo, T(0)))) + vselect(big, Fmt<T>::kLn2Hi, T(0));
}

template <class V> FASTNN_VM V vlog1p(const V& x) {
  typedef typename Lane<V>::type T;
  const T inf = from_bits(Fmt<T>::kInf);
  V out = vselect(x == inf, x, vselect(vabs(x) < Fmt<T>::kTiny, x, log1p_finite(x)));
  out = vselect(x == T(-1), -inf, out);
  return vselect(x < T(-1), inf - inf, out);
}

// tanh(|x|) = -expm1(-2|x|) / (2 + expm1(-2|x|)), sign restored.
template <bool kShort = false, class V> FASTNN_VM V vtanh(const V& x) {
  typedef typename Lane<V>::type T;
  const V em = vexpm1_nonpos<kShort>(vabs(x) * T(-2));
  return copysign_of((T(0) - em) / (em + T(2)), x);
}

// The standard normal tail Phi(-u) = exp(-u^2/2) * (1 - z) * M(z) for u >= sqrt(2),
// z = (u - 3) / (u + 3), M fitted (least squares on Chebyshev nodes; relative error
// 3e-8 float32, 5e-17 float64). e = exp(-u^2/2), u <= 40.
template <class V> FASTNN_VM V normal_tail(const V& u, const V& e) {
  typedef typename Lane<V>::type T;
  const V q = T(1) / (u + T(3));
  const V z = (u - T(3)) * q;
  V m;
  if (sizeof(T) == 4)
    m = poly<T>(z, 0.12151394798077877, -0.08488865717730389, 0.03833633185607145,
                -0.00787750255046123, -0.0017444020516012542, 0.001166856860459854,
                0.00016966435457680824, -0.0001943830830075283, -1.2668967231831242e-05,
                2.119319654373937e-05);
  else
    m = poly<T>(z, 0.12151394835556216, -0.08488866365291492, 0.038336286662435284,
                -0.007877170857160333, -0.0017438111707027456, 0.0011621035401091356,
                0.00017126538278370025, -0.00017430477839682168, -4.2762677853052424e-05,
                2.5732677307225368e-05, 1.3136521510913661e-05, -2.211404410369154e-06,
                -3.451105491126044e-06, -5.621799800242191e-07, 5.894023202481646e-07,
                3.171286590900164e-07, 1.1527693457529527e-07, -1.1941254564085663e-07,
                -1.7310518531912834e-07, 1.4619867097909435e-07, -3.0734747519788054e-08);
  return e * ((q * T(6)) * m);
}

// erf(a) / a as a polynomial in s = a^2, for |a| <= 1 (fitted like M: relative error
// 7e-8 float32, 2e-17 float64).
template <class V> FASTNN_VM V erf_small(const V& s) {
  typedef typename Lane<V>::type T;
  if (sizeof(T) == 4)
    return poly<T>(s, 1.1283791656893225, -0.3761262556739925, 0.11283582247992896,
                   -0.026853691099714645, 0.005188098889400459, -0.0008008189323165635,
                   7.847259126965687e-05);
  return poly<T>(s, 1.1283791670955126, -0.37612638903183515, 0.1128379167094405,
                 -0.026866170643090832, 0.005223977605955977, -0.0008548325921832884,
                 0.00012055293361789941, -1.4924708324571507e-05, 1.6447084274239356e-06,
                 -1.6205964194101388e-07, 1.3709519207384055e-08, -7.77682913736281e-10);
}

// erf(x): x * P(x^2) for |x| < 1, else sign * (1 - erfc(|x|)), erfc(a) = 2 Phi(-a sqrt2).
template <class V> FASTNN_VM V verf(const V& x) {
  typedef typename Lane<V>::type T;
  const V a = vmin(vabs(x), T(40));
  const V tail = normal_tail(a * T(1.4142135623730951), exp_neg_sq(a, T(1))) * T(2);
  const V y = vselect(a < T(1), a * erf_small(a * a), T(1) - tail);
  return copysign_of(y, x);
}

// exp(-u^2/2) * 2^kScaleBits * m for 0 <= u <= sqrt(-2 kExpScaledLo) (or NaN), -u^2/2 carried
// in two parts (h + l exactly, by fmadd; a rounded u^2 would cost u^2/2 ulps of exp), and
// (1 + p) m as fmadd(p, m, m), one rounding fewer than exp times m. 0 where u > zero_above
// (where the caller's result, scaled back, would be below the smallest normal: see
// unscale_pos).
template <class V, class M>
FASTNN_VM V exp_neg_half_sq_scaled(const V& u, const M& m, typename Lane<V>::type zero_above) {
  typedef typename Lane<V>::type T;
  const V nhu = u * T(-0.5);  // exact
  const V h = u * nhu;
  V p, scale;
  exp_scaled_parts(h, fmadd(u, nhu, h * T(-1)), p, scale);
  return fmadd(p, m, m) * vselect(u > zero_above, T(0), scale);
}

// The standard normal tail Phi(-u) = e M(z) / (u + 3), e = exp(-u^2/2), for u >= 0, z =
// (u - 3) / (u + 3) in [-1, 1): with a = u / (u + 3), z = 2a - 1 and u Phi(-u) = e a M(z).
// M is fitted over all of z, coefficients rounded one at a time: float32 11 terms,
// relative error 4e-8; float64 28 terms, 5e-17.
template <class V> FASTNN_VM V normal_tail_m(const V& z) {
  typedef typename Lane<V>::type T;
  if (sizeof(T) == 8)
    return poly<T>(z, 0.729083690133373, -0.5093319819174894, 0.2300177199745958,
                   -0.04726302514298287, -0.010462867022930332, 0.006972621240953367,
                   0.0010275922509792854, -0.0010458286319688498, -0.00025657525246762183,
                   0.00015439455971359727, 7.881202165204228e-05, -1.3246631584231391e-05,
                   -2.06862778449024e-05, -3.515212982277525e-06, 3.631827320964796e-06,
                   2.2491171862937392e-06, 2.3521396391501993e-08, -5.774754357362805e-07,
                   -2.9238150372941403e-07, 1.9699851437776094e-08, 1.0996521630724e-07,
                   4.711109446725034e-08, -1.9648717437813217e-08, -2.0271086377282743e-08,
                   9.22120767104465e-10, 4.113491380896197e-09, 1.6752576105401897e-10,
                   -3.580444561432494e-10);
  return poly<T>(z, 0.7290837168693542, -0.5093321204185486, 0.23001661896705627,
                 -0.0472600944340229, -0.010453034192323685, 0.006955394055694342,
                 0.0009929914958775043, -0.0010049884440377355, -0.0001982745889108628,
                 0.0001129679149016738, 2.9113971322658472e-05);
}

// A derivative f' near its root x0 = x0_hi + x0_lo, as d P(d) with d = (x - x0_hi) -
// x0_lo (the subtraction is exact there) and P fitted to f'(x0 + d) / d over |d| <= radius
// (coefficients rounded one at a time): relative accuracy where the terms of f' cancel.
// Elsewhere `away`.
template <class V, class... C>
FASTNN_VM V near_root(const V& x, const V& away, double radius, double x0, double x0_lo, C... c) {
  typedef typename Lane<V>::type T;
  const T hi = T(x0), lo = T((x0 - double(hi)) + x0_lo);
  const V d = (x - hi) - lo;
  return vselect(vabs(d) <= T(radius), d * poly<T>(d, c...), away);
}

// ------------------------------------------------------------------ activations
// Each functor has forward(x) = f(x) and grad(x) = f'(x); the backward is dy * f'(x).
// The limits at +-inf are the mathematical ones; NaN gives NaN.

struct Relu {
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    return vselect(x < T(0), T(0), x);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    return vselect(x > T(0), T(1), vselect(x <= T(0), T(0), x));
  }
};

template <class T> struct LeakyRelu {
  T slope;
  template <class V> FASTNN_VM V forward(const V& x) const { return vselect(x > T(0), x, x * slope); }
  template <class V> FASTNN_VM V grad(const V& x) const {
    return vselect(x > T(0), T(1), vselect(x <= T(0), slope, x));
  }
};

// SELU's constants (Klambauer et al. 2017), for both passes.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

// ELU and SELU: scale * (x >= 0 ? x : alpha * expm1(x)); f' = scale * alpha * exp(x)
// for x <= 0. x >= 0 takes x itself, so f(-0) = -0 whatever the sign of alpha. The exp
// branch is computed for every lane (its value is discarded for x > 0, so x is not
// capped at 0 first). f' is flushed to zero (of alpha's sign) below flush_below, where
// |alpha_scale| exp(x) is under the smallest normal. exp(x) comes scaled by 2^kScaleBits:
// f' multiplies it by alpha_scale scaled back first when |alpha_scale| >= 1 (so that a
// huge alpha does not overflow), by kSmall at the end otherwise (so that a tiny one does
// not underflow); either way no intermediate is denormal.
template <class T> struct Elu {
  T alpha, scale, alpha_scale, flush_below, grad_factor, grad_post;
  FASTNN_HD static Elu make(double alpha, double scale) {
    const double as = double(T(alpha * scale));
    const double tiny = sizeof(T) == 4 ? 0x1p-126 : 0x1p-1022;
    // a little below log(tiny / |as|): what is flushed is below the smallest normal
    // (not below exp_scaled's range: an alpha_scale over 1e19 flushes from there)
    const double below = as == 0 ? 0 : fmax(log(tiny / fabs(as)) - 0.01, double(Fmt<T>::kExpScaledLo));
    const bool big = fabs(as) >= 1;
    return {T(alpha), T(scale), T(as), T(below), big ? T(as * double(Fmt<T>::kSmall)) : T(as),
            big ? T(1) : Fmt<T>::kSmall};
  }
  template <class V> FASTNN_VM V forward(const V& x) const {
    return vselect(x >= T(0), x * scale, vexpm1_nonpos<true>(x) * alpha_scale);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    V p, s;
    exp_scaled_parts<false>(x, p, s);  // garbage below kExpScaledLo (and above 0), not selected
    const V g_s = vselect(x < flush_below, T(0) * alpha_scale, fmadd(p, grad_factor, grad_factor) * s);
    return vselect(x > T(0), scale, g_s * grad_post);
  }
};

// x * Phi(x); f' = Phi(x) + x phi(x). With u = |x|: f = -u Phi(-u) (x < 0) or x - u Phi(-u);
// f' = w (x < 0) or 1 - w, w = Phi(-u) - u phi(u). u is capped where f(-u) rounds to -0
// (float32 15, float64 40), so +-inf go through.
struct Gelu {
  template <class V> FASTNN_VM static V capped_abs(const V& x) {
    typedef typename Lane<V>::type T;
    return vmin(vabs(x), T(sizeof(T) == 4 ? 15 : 40));
  }
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    const V u = capped_abs(x);
    const V a = u / (u + T(3));
    // u Phi(-u), 0 where below the smallest normal
    const V w = exp_neg_half_sq_scaled(u, a * normal_tail_m(fmadd(a, T(2), T(-1))),
                                       T(sizeof(T) == 4 ? 13.15 : 37.62)) * Fmt<T>::kSmall;
    return vmax(x, T(-0.0)) - w;  // x < 0: -0 - w
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V u = capped_abs(x);
    // w = e (u0 - u) K(z), e = exp(-u^2/2): u0 = 0.7518 is its root, K fitted over all of z
    // in [-1, 1] (float32 10 terms, relative error 8e-9; float64 24 terms, 4e-17), so
    // nothing cancels, near u0 or elsewhere.
    constexpr double u0 = 0.7517915246935645, u0_lo = -1.4956759177009883e-17;
    const T u0h = T(u0), u0l = T((u0 - double(u0h)) + u0_lo);
    const V z = fmadd(u / (u + T(3)), T(2), T(-1));
    V k;
    if (sizeof(T) == 4)
      k = poly<T>(z, 0.4782976806163788, -0.11997544765472412, 0.05359603464603424,
                  -0.014074328355491161, 0.00020462168322410434, 0.0010923933004960418,
                  -9.582976781530306e-05, -0.00012371159391477704, 7.630429536220618e-06,
                  1.3238990504760295e-05);
    else
      k = poly<T>(z, 0.4782976777552484, -0.11997542713544528, 0.053596109834972115,
                  -0.014074772490159966, 0.00020407134787622978, 0.0010950104705547473,
                  -9.407406918486334e-05, -0.00013002427970055806, 4.764481439579706e-06,
                  2.0092271104367874e-05, 2.539963875683994e-06, -3.01650976893178e-06,
                  -1.2395463551901994e-06, 2.4148621657284786e-07, 3.4069525425801785e-07,
                  6.994557155878852e-08, -5.421990792495426e-08, -3.999702190289415e-08,
                  -5.883771745321924e-10, 1.0222766354777545e-08, 2.5540218456032534e-09,
                  -1.4305798189242417e-09, -4.4242950581327344e-10, 8.146206325906188e-11);
    const V w = exp_neg_half_sq_scaled(u, ((u0h - u) + u0l) * k, T(sizeof(T) == 4 ? 13.35 : 37.72)) *
                Fmt<T>::kSmall;
    return vselect(x < T(0), w, T(1) - w);
  }
};

// x * sigma(2z), 2z = x (C1 + C3 x^2), C1 = 2 sqrt(2/pi), C3 = 0.044715 C1 (= 0.5 x (1 +
// tanh z)); f' = sigma(2z) + x sigma(2z) sigma(-2z) (2z)'. With u = |x| (capped where
// f(-u) rounds to -0: float32 11.5, float64 24, which keeps |2z| within exp_scaled's
// range) and e = exp(-|2z|): f = -u e / (1 + e) (x < 0) or x / (1 + e); f' = e (1 + e -
// u (2z)') / (1 + e)^2 (x < 0) or (1 + e + u e (2z)') / (1 + e)^2. -|2z| is the rounded
// -u (C1 + C3 u^2) plus the product's and C1's rounding errors: the rounding of C1 + C3
// u^2 is left, a relative error of e of about |2z| / 2 ulps in the left tail. (Carrying
// 2z fully in two parts brings every x within 4 ulp, at 20% (forward) and 30% (backward)
// more time.)
struct GeluTanh {
  static constexpr double kC1 = 1.5957691216057308, kC1Lo = -9.96930880911092e-17;
  static constexpr double kC3 = 0.07135481627260025;
  template <class T> FASTNN_HD static constexpr T cap() { return T(sizeof(T) == 4 ? 11.5 : 24); }
  // e = exp(-|2z|) = (1 + p) scale 2^-S for nu = -u, h = u^2; scale = 0 where u > zero_above.
  template <class V>
  FASTNN_VM static void exp_neg_two_z(const V& nu, V& h, V& p, V& scale, typename Lane<V>::type zero_above) {
    typedef typename Lane<V>::type T;
    const T c1 = T(kC1), c1l = T((kC1 - double(c1)) + kC1Lo);
    h = nu * nu;
    const V g = fmadd(h, T(kC3), c1);
    const V zh = nu * g;
    exp_scaled_parts(zh, fmadd(nu, c1l, fmadd(nu, g, zh * T(-1))), p, scale);
    scale = vselect(nu < -zero_above, T(0), scale);
  }
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    const V nu = vmax(neg_abs(x), T(-cap<T>()));
    V h, p, scale;
    exp_neg_two_z(nu, h, p, scale, T(sizeof(T) == 4 ? 10.11 : 21.18));  // f below the smallest normal
    const V e_s = fmadd(p, scale, scale);
    return vselect(x < T(0), (nu * e_s) * Fmt<T>::kSmall, x) / fmadd(e_s, Fmt<T>::kSmall, T(1));
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V nu = vmax(neg_abs(x), T(-cap<T>()));
    V h, p, scale;
    exp_neg_two_z(nu, h, p, scale, T(sizeof(T) == 4 ? 10.24 : 21.23));  // f' below the smallest normal
    const V sk = unscale_floor(scale);
    const V e = fmadd(p, sk, sk), w = e + T(1);
    const V udz = vabs(nu) * fmadd(h, T(3 * kC3), T(kC1));  // u (2z)'
    const V n = w - udz;
    const V away = vselect(x < T(0), (fmadd(p, n, n) * scale) * Fmt<T>::kSmall, fmadd(udz, e, w)) /
                   fmadd(e, e + T(2), T(1));
    if (sizeof(T) == 4)
      return near_root(x, away, 0.15, -0.7524614220710163, 3.635560509207687e-17,
                       0.4304001033306122, 0.38751843571662903, -0.015787217766046524,
                       -0.11394236236810684, -0.016231734305620193, 0.019553866237401962,
                       -0.004597737453877926);
    return near_root(x, away, 0.15, -0.7524614220710163, 3.635560509207687e-17,
                     0.4304000910248585, 0.3875184461357889, -0.015782853521822765,
                     -0.1139444830809193, -0.016619328352040476, 0.019682309445342962,
                     0.005261060624998702, -0.0024227296058979245, -0.0009275435195959023,
                     0.00026376020799114236, 0.0001278597369505529, -2.8965338610615687e-05,
                     -6.518930245506168e-05, -7.641752098379323e-05);
  }
};

// sigma(x) = 1 / (1 + e) or e / (1 + e), e = exp(-|x|) <= 1: no overflow, no
// cancellation; f' = sigma(x) sigma(-x) = e / (1 + e)^2, not y (1 - y).
struct Sigmoid {
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    const V e = vexp_nonpos<false>(neg_abs(x));
    return vselect(x < T(0), e, T(1)) / (e + T(1));
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V e = vexp_nonpos<false>(neg_abs(x));
    return e / fmadd(e, e + T(2), T(1));  // (1 + e)^2
  }
};

// tanh(|x|) = -expm1(-2|x|) / (2 + expm1(-2|x|)), sign restored; f' = 1 - tanh^2 =
// 4 e / (1 + e)^2, e = exp(-2|x|): accurate in the tails.
struct Tanh {
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    const V em = vexpm1_nonpos<true>(vabs(x) * T(-2));
    return copysign_of(em / (T(-2) - em), x);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V m = neg_abs(x) * T(2);
    V t, k, r;
    exp_reduce(m, t, k, r);
    // 4 e: the exponent raised by 2, flushed where it would leave the normal range
    const V e4 = vselect(m < T(Fmt<T>::kNormalExpLo - 1.3),
                         T(0), (exp_reduced_m1<false>(r) + T(1)) * pow2_from_rounded<2>(t));
    const V e = e4 * T(0.25);
    return e4 / fmadd(e, e + T(2), T(1));
  }
};

// x * sigma(x); f' = sigma(x) (1 + x sigma(-x)). With u = |x| (capped where f(-u) rounds
// to -0: float32 120, float64 800) and e = exp(-u): f = -u e / (1 + e) (x < 0) or
// x / (1 + e); f' = e (1 + e - u) / (1 + e)^2 (x < 0) or (1 + e + u e) / (1 + e)^2.
// 1 - u and e cancel exactly at the root u = 1.2785 (Sterbenz).
struct Silu {
  template <class T> FASTNN_HD static constexpr T cap() { return T(sizeof(T) == 4 ? 120 : 800); }
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    const V nu = vmax(neg_abs(x), T(-cap<T>()));
    V p, scale;
    exp_scaled_parts(nu, p, scale);
    scale = vselect(nu < T(sizeof(T) == 4 ? -91.86 : -714.97), T(0), scale);  // f below the smallest normal
    const V e_s = fmadd(p, scale, scale);
    return vselect(x < T(0), (nu * e_s) * Fmt<T>::kSmall, x) / fmadd(e_s, Fmt<T>::kSmall, T(1));
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V nu = vmax(neg_abs(x), T(-cap<T>()));
    V p, scale;
    exp_scaled_parts(nu, p, scale);
    scale = vselect(nu < T(sizeof(T) == 4 ? -91.86 : -714.98), T(0), scale);  // f' below the smallest normal
    const V sk = unscale_floor(scale);
    const V e = fmadd(p, sk, sk);
    const V n = (nu + T(1)) + e;
    const V away = vselect(x < T(0), (fmadd(p, n, n) * scale) * Fmt<T>::kSmall,
                           fmadd(nu, e * T(-1), e + T(1))) / fmadd(e, e + T(2), T(1));
    if (sizeof(T) == 4)
      return near_root(x, away, 0.15, -1.2784645427610737, -1.0946994183093437e-16,
                       0.2178117036819458, 0.14664879441261292, 0.0188750009983778,
                       -0.01522219181060791, -0.006594404578208923, 0.00011383792298147455);
    return near_root(x, away, 0.15, -1.2784645427610737, -1.0946994183093437e-16,
                     0.2178117057198001, 0.1466487969969469, 0.018874814223778902,
                     -0.015222655223196838, -0.006606589137553605, 0.00012662741210763077,
                     0.0007985218081140018, 0.0001857070468723102, -4.090276765362325e-05,
                     -2.9725038815037235e-05, -2.9500859305525123e-06, 2.210340609061182e-06);
  }
};

// log(1 + exp(beta x)) / beta, x itself where beta x > threshold (as PyTorch);
// f' = sigma(beta x). With e = exp(-|beta x|): beta x < 0 gives log1p(e) / beta, else
// (beta x + log1p(e)) / beta. kPow2: beta is a power of 2 (1 by default), so beta x and
// the division are exact; otherwise beta x is carried in two parts (x beta = bx + bxl
// exactly, by fmadd; its rounding would be a relative error of exp(beta x) of |beta x|
// ulps) and 1 / beta as inv_beta + inv_beta_lo, so the division rounds once.
template <class T, bool kPow2 = false> struct Softplus {
  T beta, inv_beta, inv_beta_lo, threshold;
  FASTNN_HD static Softplus make(double beta, double threshold) {
    const T b = T(beta), ib = T(1 / double(b));
    return {b, ib, T(fma(-double(b), double(ib), 1.0) / double(b)), T(threshold)};
  }
  // x beta = bx + bxl; returns -|x beta| = -|bx| + lo. (bxl = 0 where bx is infinite:
  // fmadd gives NaN there.)
  template <class V> FASTNN_VM V neg_abs_bx(const V& x, V& bx, V& bxl, V& lo) const {
    bx = x * beta;
    bxl = lo = bx * T(0);  // unused (so not computed) for kPow2
    if (kPow2) return neg_abs(bx);
    bxl = vselect(vabs(bx) < from_bits(Fmt<T>::kInf), fmadd(x, beta, bx * T(-1)), T(0));
    lo = vselect(bx < T(0), bxl, bxl * T(-1));
    return neg_abs(bx);
  }
  template <class V> FASTNN_VM V over_beta(const V& y) const {
    return kPow2 ? y * inv_beta : fmadd(y, inv_beta, y * inv_beta_lo);
  }
  // log1p(e) / e, e in [0, 1]: float32 fitted (9 terms, relative error 6e-8, no division).
  template <class V> FASTNN_VM static V log1p_over(const V& e) {
    return poly<T>(e, 0.9999999403953552, -0.4999932050704956, 0.33316364884376526,
                   -0.24824300408363342, 0.19039759039878845, -0.1353188157081604,
                   0.07675690948963165, -0.028639638796448708, 0.005023771431297064);
  }
  template <class V> FASTNN_VM V forward(const V& x) const {
    V bx, bxl, lo;
    const V a = neg_abs_bx(x, bx, bxl, lo);
    V neg, pos;  // beta x < 0 and >= 0
    if (kPow2 && sizeof(T) == 4) {
      // beta >= 1: the result, at most e / beta, is no larger than e, so exp may flush
      const V e = vexp_nonpos<false>(a);
      const V l = log1p_over(e);
      neg = (e * l) * inv_beta;
      pos = fmadd(e, l, bx) * inv_beta;
    } else {
      V p, scale;
      if (kPow2) exp_scaled_parts<false>(clamp_scaled_exp_arg(a), p, scale);
      else exp_scaled_parts<false>(clamp_scaled_exp_arg(a), lo, p, scale);
      const V sk = unscale_floor(scale);
      const V e = fmadd(p, sk, sk);  // exp(-|beta x|), raised where tiny
      if (sizeof(T) == 4) {
        const V l = log1p_over(e);
        const V m = over_beta(l);
        neg = unscale_pos(fmadd(p, m, m) * scale);
        pos = over_beta(bx + fmadd(e, l, bxl));
      } else {
        const V l1p = log1p_unit(e);  // = e where e < 2^-54
        const T ib = kPow2 ? inv_beta : T(inv_beta + inv_beta_lo);
        neg = vselect(e < T(0x1p-54), unscale_pos(fmadd(p, ib, ib) * scale), over_beta(l1p));
        pos = over_beta(kPow2 ? bx + l1p : bx + (bxl + l1p));
      }
    }
    return vselect(bx > threshold, x, vselect(bx < T(0), neg, pos));
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    V bx, bxl, lo;
    const V a = neg_abs_bx(x, bx, bxl, lo);
    const V e = kPow2 ? vexp_nonpos<false>(a) : vexp_nonpos<false>(a, lo);  // sigma(beta x) <= e
    return vselect(bx > threshold, T(1), vselect(bx < T(0), e, T(1)) / (e + T(1)));
  }
};

// body(functor) with the functor of an activation and its parameters: the one place
// both backends build them (the CPU loops and the CUDA kernels take the same functors).
template <class T, class Body>
void with_activation(Activation op, ActivationParams p, const Body& body) {
  int exponent;
  switch (op) {
    case Activation::relu: return body(Relu{});
    case Activation::leaky_relu: return body(LeakyRelu<T>{T(p.a)});
    case Activation::elu: return body(Elu<T>::make(p.a, p.b));
    case Activation::gelu: return body(Gelu{});
    case Activation::gelu_tanh: return body(GeluTanh{});
    case Activation::sigmoid: return body(Sigmoid{});
    case Activation::tanh: return body(Tanh{});
    case Activation::silu: return body(Silu{});
    case Activation::softplus:  // beta a power of 2, >= 1: exact products, fewer operations
      if (frexp(p.a, &exponent) == 0.5 && exponent >= 1 && exponent < 100)
        return body(Softplus<T, true>::make(p.a, p.b));
      return body(Softplus<T>::make(p.a, p.b));
    case Activation::count: break;
  }
}

FASTNN_NAMESPACE_END

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
  static constexpr float kNormalExpLo = -87.33f;            // exp is below the smallest normal
  static constexpr float kTiny = 0x1p-25f;                  // expm1(x) = x below
  static constexpr U kInf = 0x7f800000u;
  static constexpr float kScale = 64.0f;  // 2^k = 2^(k -+ 64) * 2^(+-64)
  static constexpr float kBig = 0x1p64f, kSmall = 0x1p-64f;
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
  static constexpr double kNormalExpLo = -708.39;
  static constexpr double kTiny = 0x1p-54;
  static constexpr U kInf = 0x7ff0000000000000ull;
  static constexpr double kScale = 512.0;
  static constexpr double kBig = 0x1p512, kSmall = 0x1p-512;
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

// 2^j from t = j + kRound (j an integer in the normal exponent range): the low bits of
// t hold j, shifted into the exponent field.
template <class V> FASTNN_VM V pow2_from_rounded(const V& t) {
  typedef typename Lane<V>::type T;
  typedef typename Fmt<T>::U U;
  const U round_bits = bits_of(Fmt<T>::kRound);
  return from_bits((bits_of(t) + U(Fmt<T>::kBias - round_bits)) << Fmt<T>::kMantissa);
}

// expm1 on the reduced range |r| <= ln2/2 (Taylor: 7 terms float32, 13 float64).
// kShort (the activations, which need only their own end accuracy): float32 r + r^2 q
// with q of 4 terms fitted for relative error (expm1 5e-7, exp 2e-7); float64 as full.
template <bool kShort = false, class V> FASTNN_VM V expm1_reduced(const V& r) {
  typedef typename Lane<V>::type T;
  V q;
  if (sizeof(T) == 4 && kShort)
    q = poly<T>(r, 0.49999395595318785, 0.16666832976176266, 0.04187378207166078,
                0.00833809598787229);
  else if (sizeof(T) == 4)
    q = poly<T>(r, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040);
  else
    q = poly<T>(r, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
                1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600,
                1.0 / 6227020800.0);
  return fmadd(r * r, q, r);
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

// exp(x) for x <= 0 (or NaN), as the activations need it: one scaling (2^k stays
// normal), results below the smallest normal flushed to 0, the short polynomial
// (float32 relative error 2e-7 + rounding). Cheaper than vexp.
template <class V> FASTNN_VM V vexp_nonpos(const V& x) {
  typedef typename Lane<V>::type T;
  V t, k, r;
  exp_reduce(x, t, k, r);
  const V y = (expm1_reduced<true>(r) + T(1)) * pow2_from_rounded(t);
  return vselect(x < Fmt<T>::kNormalExpLo, T(0), y);
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

// Phi(x), the standard normal CDF, and e = exp(-x^2/2) (for phi(x) = e / sqrt(2 pi)).
// Relative accuracy also in the left tail, where 1 + erf would cancel. float32: one
// formula, Phi(-|x|) = e (1 - z) M(z) with M fitted over all of z in [-1, 1]
// (relative error 1e-7), and x^2 rounded (its error is within the conditioning of
// x Phi(x)); float64: erf's polynomial for |x| < sqrt 2, the tail formula beyond.
template <class V> FASTNN_VM V normal_cdf(const V& x, V& e) {
  typedef typename Lane<V>::type T;
  const V u = vmin(vabs(x), T(40));
  if (sizeof(T) == 4) {
    e = vexp_nonpos((u * u) * T(-0.5));
    const V q = T(1) / (u + T(3));
    const V z = (u - T(3)) * q;
    const V m6 = poly<T>(z, 0.7290837490967353, -0.5093317827944707, 0.23001437990938273,
                         -0.04726470128073983, -0.010433139758447889, 0.006972256505217805,
                         0.000933757688528274, -0.001027745877226793, -0.00012768779790329002,
                         0.00012317540696481368);  // 6 M(z)
    const V tail = e * (q * m6);
    return vselect(x < T(0), tail, T(1) - tail);
  }
  e = exp_neg_sq(u, T(0.5));
  const V tail = normal_tail(u, e);
  const V center = T(0.5) + x * (erf_small((x * x) * T(0.5)) * T(0.5 * 0.70710678118654752440));
  return vselect(u < T(1.4142135623730951), center, vselect(x < T(0), tail, T(1) - tail));
}

// sigma(x) and sigma(-x) from e = exp(-|x|) <= 1: no overflow, no cancellation.
template <class V> FASTNN_VM void sigmoid_pair(const V& x, V& s_pos, V& s_neg) {
  typedef typename Lane<V>::type T;
  const V e = vexp_nonpos(T(0) - vabs(x));
  const V d = T(1) / (e + T(1));  // sigma(|x|)
  const V ed = e * d;             // sigma(-|x|)
  s_pos = vselect(x < T(0), ed, d);
  s_neg = vselect(x < T(0), d, ed);
}

// A derivative f' near its root x0 = x0_hi + x0_lo, as d * (c0 + d * (c1 + ...)) with
// d = (x - x0_hi) - x0_lo (the subtraction is exact there) and c the Taylor
// coefficients f^(n+2)(x0) / (n+1)!: relative accuracy where Phi(x) + x phi(x) and the
// like cancel. Used for |x - x0| < 0.03 (float32) or 1e-3 (float64); the first omitted
// term is below 4e-8 (float32) or 4e-14 (float64) relative there.
template <class V>
FASTNN_VM V near_root(const V& x, const V& away, double x0, double x0_lo, double c0, double c1,
                      double c2, double c3) {
  typedef typename Lane<V>::type T;
  const T hi = T(x0), lo = T((x0 - double(hi)) + x0_lo);
  const V d = (x - hi) - lo;
  const V near = d * poly<T>(d, c0, c1, c2, c3);
  return vselect(vabs(d) < T(sizeof(T) == 4 ? 0.03 : 1e-3), near, away);
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

// ELU and SELU: scale * (x > 0 ? x : alpha * expm1(x)); f' = scale * alpha * exp(x) below 0.
// SELU's constants (Klambauer et al. 2017), for both passes.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
template <class T> struct Elu {
  T alpha, scale, alpha_scale;
  template <class V> FASTNN_VM V forward(const V& x) const {
    return vselect(x > T(0), x * scale, vexpm1_nonpos<true>(vmin(x, T(0))) * alpha_scale);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    return vselect(x > T(0), scale, vexp_nonpos(vmin(x, T(0))) * alpha_scale);
  }
};

// x * Phi(x); f' = Phi(x) + x phi(x).
struct Gelu {
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    V e;
    const V p = normal_cdf(x, e);
    return vselect(x < T(-40), T(0), x * p);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    V e;
    const V p = normal_cdf(x, e);
    const V away = p + vmax(vmin(x, T(40)), T(-40)) * (e * T(0.39894228040143267794));
    return near_root(x, away, -0.7517915246935645, 1.4956759177009883e-17, 0.4314939923140469,
                     0.388284982990552, -0.018199676398671087, -0.1140082332972217);
  }
};

// x * sigma(2z), z = sqrt(2/pi) (x + 0.044715 x^3) (= 0.5 x (1 + tanh z));
// f' = sigma(2z) + x sigma(2z) sigma(-2z) (2z)'.
struct GeluTanh {
  template <class V> FASTNN_VM static V two_z(const V& x) {
    typedef typename Lane<V>::type T;
    return (x + (x * (x * x)) * T(0.044715)) * T(2 * 0.79788456080286535588);
  }
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    V sp, sn;
    sigmoid_pair(two_z(x), sp, sn);
    return vselect(x < T(-100), T(0), x * sp);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V xc = vmax(vmin(x, T(100)), T(-100));
    V sp, sn;
    sigmoid_pair(two_z(xc), sp, sn);
    const V dz2 = (T(1) + (xc * xc) * T(3 * 0.044715)) * T(2 * 0.79788456080286535588);
    const V away = sp + (xc * (sp * sn)) * dz2;
    return near_root(x, away, -0.7524614220710163, 3.635560509207687e-17, 0.4304000910248585,
                     0.38751844613578895, -0.01578285352184803, -0.11394448308095899);
  }
};

struct Sigmoid {
  template <class V> FASTNN_VM V forward(const V& x) const {
    V sp, sn;
    sigmoid_pair(x, sp, sn);
    return sp;
  }
  template <class V> FASTNN_VM V grad(const V& x) const {  // sigma(x) sigma(-x), not y (1 - y)
    V sp, sn;
    sigmoid_pair(x, sp, sn);
    return sp * sn;
  }
};

struct Tanh {
  template <class V> FASTNN_VM V forward(const V& x) const { return vtanh<true>(x); }
  // 1 - tanh^2 = 4 e / (1 + e)^2, e = exp(-2|x|): accurate in the tails.
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V e = vexp_nonpos(vabs(x) * T(-2));
    const V d = T(1) / (e + T(1));
    return ((e * T(4)) * d) * d;
  }
};

// x * sigma(x); f' = sigma(x) (1 + x sigma(-x)).
struct Silu {
  template <class V> FASTNN_VM V forward(const V& x) const {
    typedef typename Lane<V>::type T;
    V sp, sn;
    sigmoid_pair(x, sp, sn);
    return vselect(sp == T(0), sp, x * sp);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    typedef typename Lane<V>::type T;
    const V xc = vmax(vmin(x, T(800)), T(-800));
    V sp, sn;
    sigmoid_pair(xc, sp, sn);
    return near_root(x, sp * (T(1) + xc * sn), -1.2784645427610737, -1.0946994183093437e-16,
                     0.2178117057198001, 0.1466487969969469, 0.018874814223782312,
                     -0.015222655223188032);
  }
};

// log(1 + exp(beta x)) / beta, x itself where beta x > threshold (as PyTorch);
// computed as max(beta x, 0) + log1p(exp(-|beta x|)). f' = sigma(beta x).
template <class T> struct Softplus {
  T beta, inv_beta, threshold;
  template <class V> FASTNN_VM V forward(const V& x) const {
    const V bx = x * beta;
    const V e = vexp_nonpos(T(0) - vabs(bx));
    V log1p_e;
    if (sizeof(T) == 4)  // log1p(e) / e fitted on [0, 1] (relative error 2e-7): no division
      log1p_e = e * poly<T>(e, 0.999999805658964, -0.4999740531810924, 0.33275478537579795,
                            -0.24495455456192786, 0.17745220488924324, -0.10768140669336848,
                            0.044089409582800915, -0.008539145204367967);
    else
      log1p_e = log1p_unit(e);
    const V soft = (vmax(bx, T(0)) + log1p_e) * inv_beta;
    return vselect(bx > threshold, x, soft);
  }
  template <class V> FASTNN_VM V grad(const V& x) const {
    const V bx = x * beta;
    V sp, sn;
    sigmoid_pair(bx, sp, sn);
    return vselect(bx > threshold, T(1), sp);
  }
};

FASTNN_NAMESPACE_END

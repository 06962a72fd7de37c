// 16-lane vectors for the CPU kernels, whatever the instruction set.
//
// A Vec16<T> holds 16 values as an array of the level's native registers (16 floats
// = one zmm, two ymm or four xmm). Code is written once against Vec16; reductions keep
// element i in lane i % 16 and combine lanes in a fixed order, so every level computes
// the same bits. (GCC keeps native-width vectors in registers; a 16-double generic
// vector would go through the stack on every add.)
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#if defined(__SSE2__)
// GCC 12's AVX-512 intrinsics build their "undefined" vectors by self-initialization
// (`__m512 __Y = __Y;` in _mm512_undefined_ps, used by _mm512_sqrt_ps, _mm512_cvtps_pd,
// _mm512_srli_epi64, ...), and its uninitialized-use warnings then fire wherever one is
// inlined: a false positive in the compiler's header (GCC bug 105593, fixed in GCC 13).
// Diagnostic pragmas go by source location, so this silences the header's code only;
// the same warnings in fastnn's own code still fire.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

// The loops over a run of values: everything they call is inlined into them. GCC's
// heuristics may leave a lambda or a Vec16 operator out of line in a big function, and
// then every vector goes through memory: on AVX2, where a Vec16 is two registers, GELU,
// SiLU's backward, softplus and the Adam step ran 4-10x slower that way.
#define FASTNN_RUN_LOOP __attribute__((flatten))
#endif

#include "fastnn/config.h"

namespace fastnn {
namespace cpu {
int64_t stream_threshold();  // dispatch.cpp
}  // namespace cpu
}  // namespace fastnn

FASTNN_CPU_NAMESPACE_BEGIN

#if defined(FASTNN_ISA_AVX512)
constexpr int kRegisterBytes = 64;
#elif defined(FASTNN_ISA_AVX2)
constexpr int kRegisterBytes = 32;
#else
constexpr int kRegisterBytes = 16;
#endif

constexpr int64_t kLanes = 16;

template <class T>
struct Vec16 {
  static constexpr int kPerRegister = kRegisterBytes / int(sizeof(T));
  static constexpr int kRegisters = int(kLanes) / kPerRegister;
  typedef T Register __attribute__((vector_size(kRegisterBytes)));
  Register r[kRegisters];
};

template <class T, class F>
inline Vec16<T> lanewise(F f) {
  Vec16<T> out;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) out.r[k] = f(k);
  return out;
}

#define FASTNN_VEC16_OPERATOR(op)                                                          \
  template <class T> inline Vec16<T> operator op(const Vec16<T>& a, const Vec16<T>& b) {   \
    return lanewise<T>([&](int k) { return a.r[k] op b.r[k]; });                           \
  }                                                                                        \
  template <class T> inline Vec16<T> operator op(const Vec16<T>& a, T s) {                 \
    return lanewise<T>([&](int k) { return a.r[k] op s; });                                \
  }                                                                                        \
  template <class T> inline Vec16<T> operator op(T s, const Vec16<T>& a) {                 \
    return lanewise<T>([&](int k) { return s op a.r[k]; });                                \
  }                                                                                        \
  template <class T, class U> inline Vec16<T>& operator op##=(Vec16<T>& a, const U& b) {   \
    return a = a op b;                                                                     \
  }
FASTNN_VEC16_OPERATOR(+)
FASTNN_VEC16_OPERATOR(-)
FASTNN_VEC16_OPERATOR(*)
FASTNN_VEC16_OPERATOR(^)  // integer lanes only
FASTNN_VEC16_OPERATOR(/)
#undef FASTNN_VEC16_OPERATOR

// Lane masks (all bits set = true) from comparisons, for vselect; NaN compares false.
template <class T>
struct Mask16 {
  typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type Int;
  typedef Int Register __attribute__((vector_size(kRegisterBytes)));
  Register r[Vec16<T>::kRegisters];
};

#define FASTNN_VEC16_COMPARE(op)                                                           \
  template <class T> inline Mask16<T> operator op(const Vec16<T>& a, const Vec16<T>& b) {  \
    Mask16<T> m;                                                                           \
    for (int k = 0; k < Vec16<T>::kRegisters; ++k) m.r[k] = a.r[k] op b.r[k];              \
    return m;                                                                              \
  }                                                                                        \
  template <class T> inline Mask16<T> operator op(const Vec16<T>& a, T s) {                \
    Mask16<T> m;                                                                           \
    for (int k = 0; k < Vec16<T>::kRegisters; ++k) m.r[k] = a.r[k] op s;                   \
    return m;                                                                              \
  }
FASTNN_VEC16_COMPARE(<)
FASTNN_VEC16_COMPARE(<=)
FASTNN_VEC16_COMPARE(>)
FASTNN_VEC16_COMPARE(>=)
FASTNN_VEC16_COMPARE(==)
FASTNN_VEC16_COMPARE(!=)
#undef FASTNN_VEC16_COMPARE

template <class T> inline Mask16<T> operator|(const Mask16<T>& a, const Mask16<T>& b) {
  Mask16<T> m;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) m.r[k] = a.r[k] | b.r[k];
  return m;
}
template <class T> inline Mask16<T> operator&(const Mask16<T>& a, const Mask16<T>& b) {
  Mask16<T> m;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) m.r[k] = a.r[k] & b.r[k];
  return m;
}

// Lane-wise m ? a : b (a blend).
template <class T> inline Vec16<T> vselect(const Mask16<T>& m, const Vec16<T>& a, const Vec16<T>& b) {
  return lanewise<T>([&](int k) { return m.r[k] ? a.r[k] : b.r[k]; });
}
template <class T> inline Vec16<T> vselect(const Mask16<T>& m, const Vec16<T>& a, T b) {
  return lanewise<T>([&](int k) { return m.r[k] ? a.r[k] : b - typename Vec16<T>::Register{}; });
}
template <class T> inline Vec16<T> vselect(const Mask16<T>& m, T a, const Vec16<T>& b) {
  return lanewise<T>([&](int k) { return m.r[k] ? a - typename Vec16<T>::Register{} : b.r[k]; });
}
template <class T> inline Vec16<T> vselect(const Mask16<T>& m, T a, T b) {
  typedef typename Vec16<T>::Register R;
  return lanewise<T>([&](int k) { return m.r[k] ? a - R{} : b - R{}; });
}

// The bits of each lane as an unsigned integer of the same width (for exponent tricks
// in the vector math: bits_of, from_bits, integer + - & | << >>).
template <class T>
struct Bits16 {
  typedef typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type UInt;
  typedef UInt Register __attribute__((vector_size(kRegisterBytes)));
  Register r[Vec16<T>::kRegisters];
};

template <class T> inline Bits16<T> bits_of(const Vec16<T>& v) {
  Bits16<T> b;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) b.r[k] = (typename Bits16<T>::Register)v.r[k];
  return b;
}
template <class T> inline Vec16<T> from_bits(const Bits16<T>& b) {
  return lanewise<T>([&](int k) { return (typename Vec16<T>::Register)b.r[k]; });
}

#define FASTNN_BITS16_OPERATOR(op)                                                         \
  template <class T> inline Bits16<T> operator op(const Bits16<T>& a, const Bits16<T>& b) { \
    Bits16<T> o;                                                                           \
    for (int k = 0; k < Vec16<T>::kRegisters; ++k) o.r[k] = a.r[k] op b.r[k];              \
    return o;                                                                              \
  }                                                                                        \
  template <class T> inline Bits16<T> operator op(const Bits16<T>& a, typename Bits16<T>::UInt s) { \
    Bits16<T> o;                                                                           \
    for (int k = 0; k < Vec16<T>::kRegisters; ++k) o.r[k] = a.r[k] op s;                   \
    return o;                                                                              \
  }
FASTNN_BITS16_OPERATOR(+)
FASTNN_BITS16_OPERATOR(-)
FASTNN_BITS16_OPERATOR(&)
FASTNN_BITS16_OPERATOR(|)
#undef FASTNN_BITS16_OPERATOR
template <class T> inline Bits16<T> operator<<(const Bits16<T>& a, int s) {
  Bits16<T> o;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) o.r[k] = a.r[k] << s;
  return o;
}
template <class T> inline Bits16<T> operator>>(const Bits16<T>& a, int s) {
  Bits16<T> o;
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) o.r[k] = a.r[k] >> s;
  return o;
}

// vmax(a, b) = a < b ? b : a and vmin(a, b) = a > b ? b : a, lane by lane, as
// fastnn/activation_math.h defines them for any value type (a NaN in a stays NaN), by the
// level's max / min instruction: it returns its second operand when either is NaN, so
// max(b, a) is exactly that, one instruction instead of a compare and a blend.
template <class R, class T>
inline R max_register(T b, R a) {
  const R bv = b - R{};  // b - 0 keeps a -0 (0 + -0 would not)
#if defined(FASTNN_ISA_AVX512)  // the masked form: GCC 12 warns on the plain one's undefined source
  if constexpr (sizeof(T) == 4) return R(_mm512_mask_max_ps(__m512(bv), 0xffff, __m512(bv), __m512(a)));
  else return R(_mm512_mask_max_pd(__m512d(bv), 0xff, __m512d(bv), __m512d(a)));
#elif defined(FASTNN_ISA_AVX2)
  if constexpr (sizeof(T) == 4) return R(_mm256_max_ps(__m256(bv), __m256(a)));
  else return R(_mm256_max_pd(__m256d(bv), __m256d(a)));
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == 4) return R(_mm_max_ps(__m128(bv), __m128(a)));
  else return R(_mm_max_pd(__m128d(bv), __m128d(a)));
#else
  return a < bv ? bv : a;
#endif
}
template <class R, class T>
inline R min_register(T b, R a) {
  const R bv = b - R{};  // b - 0 keeps a -0 (0 + -0 would not)
#if defined(FASTNN_ISA_AVX512)
  if constexpr (sizeof(T) == 4) return R(_mm512_mask_min_ps(__m512(bv), 0xffff, __m512(bv), __m512(a)));
  else return R(_mm512_mask_min_pd(__m512d(bv), 0xff, __m512d(bv), __m512d(a)));
#elif defined(FASTNN_ISA_AVX2)
  if constexpr (sizeof(T) == 4) return R(_mm256_min_ps(__m256(bv), __m256(a)));
  else return R(_mm256_min_pd(__m256d(bv), __m256d(a)));
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == 4) return R(_mm_min_ps(__m128(bv), __m128(a)));
  else return R(_mm_min_pd(__m128d(bv), __m128d(a)));
#else
  return a > bv ? bv : a;
#endif
}
template <class T> inline Vec16<T> vmax(const Vec16<T>& a, T b) {
  return lanewise<T>([&](int k) { return max_register(b, a.r[k]); });
}
template <class T> inline Vec16<T> vmin(const Vec16<T>& a, T b) {
  return lanewise<T>([&](int k) { return min_register(b, a.r[k]); });
}

template <class T>
inline Vec16<T> zeros16() {
  return lanewise<T>([](int) { return typename Vec16<T>::Register{}; });
}

template <class T>
inline Vec16<T> broadcast16(T s) {  // s - 0, not 0 + s, so that -0 stays -0
  return lanewise<T>([s](int) { return s - typename Vec16<T>::Register{}; });
}

// One memcpy per register: GCC turns each into a single unaligned vector move.
template <class T>
inline Vec16<T> load16(const T* p) {
  return lanewise<T>([p](int k) {
    typename Vec16<T>::Register r;
    memcpy(&r, p + k * Vec16<T>::kPerRegister, sizeof r);
    return r;
  });
}

template <class T>
inline void store16(T* p, const Vec16<T>& v) {
  for (int k = 0; k < Vec16<T>::kRegisters; ++k)
    memcpy(p + k * Vec16<T>::kPerRegister, &v.r[k], sizeof v.r[k]);
}

// a * b + c with one rounding, lane by lane (fmadd in fastnn/activation_math.h says
// why it is explicit). AVX2 and AVX-512 have the instruction; the baseline level gets
// the same bits from libm's fma(), one lane at a time (slow, but exact).
template <class R>
inline R fma_register(R a, R b, R c) {
#if defined(FASTNN_ISA_AVX512)
  if constexpr (sizeof(a[0]) == 4) return R(_mm512_fmadd_ps(__m512(a), __m512(b), __m512(c)));
  else return R(_mm512_fmadd_pd(__m512d(a), __m512d(b), __m512d(c)));
#elif defined(FASTNN_ISA_AVX2)
  if constexpr (sizeof(a[0]) == 4) return R(_mm256_fmadd_ps(__m256(a), __m256(b), __m256(c)));
  else return R(_mm256_fmadd_pd(__m256d(a), __m256d(b), __m256d(c)));
#else
  R out;
  for (int l = 0; l < int(sizeof(R) / sizeof(a[0])); ++l) {
    if constexpr (sizeof(a[0]) == 4) out[l] = fmaf(a[l], b[l], c[l]);
    else out[l] = fma(a[l], b[l], c[l]);
  }
  return out;
#endif
}
template <class T> inline const Vec16<T>& as_vec16(const Vec16<T>& v) { return v; }
template <class T> inline Vec16<T> as_vec16(T s) { return broadcast16(s); }
// b and c may be scalars.
template <class T, class B, class C>
inline Vec16<T> fmadd(const Vec16<T>& a, const B& b, const C& c) {
  const Vec16<T> bv = as_vec16<T>(b), cv = as_vec16<T>(c);
  return lanewise<T>([&](int k) { return fma_register(a.r[k], bv.r[k], cv.r[k]); });
}

// Non-temporal store of 16 values to p, aligned to kRegisterBytes: the lines go to
// memory without first being read into the cache (no read-for-ownership), which saves
// a third of the traffic of y = f(x) when y is too big to stay in the cache anyway.
// Call stream_fence() before the data is handed to another thread.
template <class T, class R>
inline void stream_register(T* p, R r) {
#if defined(FASTNN_ISA_AVX512)
  if constexpr (sizeof(T) == 4) _mm512_stream_ps(p, __m512(r));
  else _mm512_stream_pd(p, __m512d(r));
#elif defined(FASTNN_ISA_AVX2)
  if constexpr (sizeof(T) == 4) _mm256_stream_ps(p, __m256(r));
  else _mm256_stream_pd(p, __m256d(r));
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == 4) _mm_stream_ps(p, __m128(r));
  else _mm_stream_pd(p, __m128d(r));
#else
  memcpy(p, &r, sizeof r);
#endif
}
template <class T>
inline void stream16(T* p, const Vec16<T>& v) {
  for (int k = 0; k < Vec16<T>::kRegisters; ++k) stream_register(p + k * Vec16<T>::kPerRegister, v.r[k]);
}
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// Streamed stores start at a cache line: a line written partly by streaming stores and
// partly by plain ones (a run's ragged head or tail) costs a round trip to memory each
// time. On AVX2 (32-byte registers) register alignment was not enough: batch norm's
// NHWC rows written into a NumPy array (16 bytes past a line) took 16x as long.
constexpr int kCacheLineBytes = 64;
static_assert(kCacheLineBytes % kRegisterBytes == 0, "a line boundary is a register boundary");

// Values of T before p reaches a cache line boundary (where streamed stores may begin),
// or -1 if it never does (p not aligned to sizeof(T)).
template <class T>
inline int64_t values_to_alignment(const T* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a % sizeof(T)) return -1;
  return int64_t((uintptr_t(0) - a) % kCacheLineBytes / sizeof(T));
}

// Whether a pass over arrays of `bytes` in all should stream its output: when they
// don't fit in the last-level cache, the output is evicted before anyone reuses it.
// The threshold (the cache's size) is process-wide, in dispatch.cpp.
inline bool streaming_pays(int64_t bytes) { return bytes > ::fastnn::cpu::stream_threshold(); }

// 16 values widened to float64 (exact), straight from memory.
inline Vec16<double> load16_f64(const double* p) { return load16(p); }
// float -> double by the level's own instruction: GCC lowers __builtin_convertvector
// for these widths as half-width converts plus inserts.
inline Vec16<double> load16_f64(const float* p) {
  constexpr int kPer = Vec16<double>::kPerRegister;
  return lanewise<double>([p](int k) {
    typedef Vec16<double>::Register R;
#if defined(__AVX512F__)
    return R(_mm512_cvtps_pd(_mm256_loadu_ps(p + k * kPer)));
#elif defined(__AVX2__)
    return R(_mm256_cvtps_pd(_mm_loadu_ps(p + k * kPer)));
#elif defined(__SSE2__)
    double two_floats;  // 8 bytes: p[2k], p[2k + 1]
    memcpy(&two_floats, p + k * kPer, sizeof two_floats);
    return R(_mm_cvtps_pd(_mm_castpd_ps(_mm_set_sd(two_floats))));
#else
    typedef float Half __attribute__((vector_size(kRegisterBytes / 2)));
    Half h;
    memcpy(&h, p + k * kPer, sizeof h);
    return __builtin_convertvector(h, R);
#endif
  });
}

// The first n < 16 values widened to float64, the other lanes 0.
template <class T>
inline Vec16<double> load_tail16_f64(const T* p, int64_t n) {
  T buf[kLanes] = {};
  memcpy(buf, p, sizeof(T) * n);
  return load16_f64(buf);
}

// v in the first n lanes, 0 after (whatever v holds there, inf and NaN included).
inline Vec16<double> first_lanes(const Vec16<double>& v, int64_t n) {
  double lanes[kLanes];
  store16(lanes, v);
  for (int64_t l = n; l < kLanes; ++l) lanes[l] = 0.0;
  return load16(lanes);
}

// Sum of the 16 lanes as a fixed pairwise tree.
inline double reduce_lanes(const Vec16<double>& v) {
  double t[kLanes];
  store16(t, v);
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int l = 0; l < width; ++l) t[l] += t[l + width];
  return t[0];
}

// sum over i < n of f(double(x[i])), element i in lane i % 16. f takes a double or a
// Vec16<double>.
template <class T, class F>
inline double lane_sum(const T* x, int64_t n, F f) {
  Vec16<double> acc = zeros16<double>();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += f(load16_f64(x + i));
  if (i < n) acc += first_lanes(f(load_tail16_f64(x + i, n - i)), n - i);
  return reduce_lanes(acc);
}

// y[i] = f(x[i]) for i < n. Each vector is loaded before it is stored, so y == x is fine.
template <class T, class F>
inline void map16(const T* x, T* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store16(y + i, f(load16(x + i)));
  for (; i < n; ++i) y[i] = f(x[i]);
}

// z[i] = f(a[i], b[i]) for i < n; z may be a or b.
template <class T, class F>
inline void map16(const T* a, const T* b, T* z, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store16(z + i, f(load16(a + i), load16(b + i)));
  for (; i < n; ++i) z[i] = f(a[i], b[i]);
}

// ---------------------------------------------------------------- uint32 lanes

// hi:lo = a * b[l], the full 64-bit products (for philox.h). x86 multiplies the even
// 32-bit lanes into 64-bit products (mul_epu32); the odd lanes are shifted down for a
// second multiply, and the halves are put back in place.
inline void mulhilo32(uint32_t a, const Vec16<uint32_t>& b, Vec16<uint32_t>& hi,
                      Vec16<uint32_t>& lo) {
  typedef Vec16<uint32_t>::Register R;
  for (int k = 0; k < Vec16<uint32_t>::kRegisters; ++k) {
#if defined(__AVX512F__)
    const __m512i m = _mm512_set1_epi64(a), v = __m512i(b.r[k]);
    const __m512i even = _mm512_mul_epu32(v, m);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(v, 32), m);
    // _MM_PERM_CDAB swaps the 32-bit halves of each 64-bit product
    hi.r[k] = R(_mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_CDAB));
    lo.r[k] = R(_mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CDAB));
#elif defined(__AVX2__)
    const __m256i m = _mm256_set1_epi64x(a), v = __m256i(b.r[k]);
    const __m256i even = _mm256_mul_epu32(v, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(v, 32), m);
    hi.r[k] = R(_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA));
    lo.r[k] = R(_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA));
#elif defined(__SSE2__)
    const __m128i m = _mm_set1_epi64x(a), v = __m128i(b.r[k]);
    const __m128i even = _mm_mul_epu32(v, m);
    const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(v, 32), m);
    const __m128i low = _mm_set1_epi64x(0xffffffff);
    hi.r[k] = R(_mm_or_si128(_mm_srli_epi64(even, 32), _mm_andnot_si128(low, odd)));
    lo.r[k] = R(_mm_or_si128(_mm_and_si128(even, low), _mm_slli_epi64(odd, 32)));
#else
    for (int l = 0; l < Vec16<uint32_t>::kPerRegister; ++l) {
      const uint64_t p = uint64_t(a) * b.r[k][l];
      hi.r[k][l] = uint32_t(p >> 32);
      lo.r[k][l] = uint32_t(p);
    }
#endif
  }
}

// Bit l set iff v[l] >= t (unsigned).
inline uint32_t ge_bits16(const Vec16<uint32_t>& v, uint32_t t) {
#if defined(__AVX512F__)
  return _mm512_cmpge_epu32_mask(__m512i(v.r[0]), _mm512_set1_epi32(int(t)));
#else
  constexpr int kPer = Vec16<uint32_t>::kPerRegister;
  const Vec16<uint32_t>::Register tv = Vec16<uint32_t>::Register{} + t;
  uint32_t bits = 0;
  for (int k = 0; k < Vec16<uint32_t>::kRegisters; ++k) {
    const auto ge = v.r[k] >= tv;  // lanes -1 or 0
#if defined(__AVX2__)
    bits |= uint32_t(_mm256_movemask_ps(__m256(ge))) << (k * kPer);
#elif defined(__SSE2__)
    bits |= uint32_t(_mm_movemask_ps(__m128(ge))) << (k * kPer);
#else
    for (int l = 0; l < kPer; ++l) bits |= uint32_t(ge[l] & 1) << (k * kPer + l);
#endif
  }
  return bits;
#endif
}

// Lane l = value if bit l of bits is set, else +0.
template <class T>
inline Vec16<T> select_bits16(uint32_t bits, T value) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {  // the bits are the lane mask
    return {{typename Vec16<T>::Register(_mm512_maskz_mov_ps(__mmask16(bits), _mm512_set1_ps(value)))}};
  } else {
    return lanewise<T>([&](int k) {
      return typename Vec16<T>::Register(_mm512_maskz_mov_pd(__mmask8(bits >> (8 * k)), _mm512_set1_pd(value)));
    });
  }
#else
  typedef __typeof__(Vec16<T>{}.r[0] < Vec16<T>{}.r[0]) Mask;  // ints of T's width
  typedef __typeof__(Mask{}[0]) I;
  constexpr int kPer = Vec16<T>::kPerRegister;
  static const I kLaneBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                 8192, 16384, 32768};
  Mask lane_bit;
  memcpy(&lane_bit, kLaneBit, sizeof lane_bit);
  I v;
  memcpy(&v, &value, sizeof v);
  const Mask value_bits = Mask{} + v;
  return lanewise<T>([&](int k) {
    const Mask b = Mask{} + I(bits >> (k * kPer));
    return typename Vec16<T>::Register(((b & lane_bit) != 0) & value_bits);
  });
#endif
}

FASTNN_CPU_NAMESPACE_END

// Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011): a counter-based generator. Four 32-bit counter words and a
// 64-bit key give four random words; the same (key, counter) gives the same words on
// every backend, so a dropout mask depends only on (seed, offset, element index)
// (fastnn/dropout_math.h).
//
// One implementation for both backends: V is uint32_t (CUDA, scalar callers) or a CPU
// vector of uint32 lanes (cpu/simd.h's Vec16<uint32_t>, which supplies its own
// mulhilo32 and the ^ operators).
#pragma once
#include <stdint.h>
#include "fastnn/config.h"

FASTNN_NAMESPACE_BEGIN

// Random123's constants: round multipliers and the Weyl key increments.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

// hi:lo = a * b, the full 64-bit product.
FASTNN_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t p = uint64_t(a) * b;
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
#endif
}

// c: the counter in, the four random words out. Key (k0, k1).
template <class V>
FASTNN_HD void philox4x32_10(V (&c)[4], uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__CUDACC__)  // nvcc's host pass knows neither pragma
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    V hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, c[0], hi0, lo0);
    mulhilo32(kPhiloxM1, c[2], hi1, lo1);
    c[0] = hi1 ^ c[1] ^ k0;
    c[1] = lo1;
    c[2] = hi0 ^ c[3] ^ k1;
    c[3] = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

FASTNN_NAMESPACE_END

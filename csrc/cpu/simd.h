// Fixed-width vectors for the CPU kernels (GCC/Clang vector extensions).
// A vec16 is 16 lanes whatever the instruction set: one zmm, two ymm or four xmm
// registers. Reductions keep lane i for element i % 16 and combine lanes in a fixed
// order, so every instruction set produces the same bits.
#pragma once
#include <stdint.h>
#include <string.h>
#include "fastnn/config.h"

FASTNN_CPU_NAMESPACE_BEGIN

constexpr int64_t kLanes = 16;
typedef float f32x16 __attribute__((vector_size(64)));
typedef double f64x16 __attribute__((vector_size(128)));

template <class T> struct vec16_of;
template <> struct vec16_of<float> { typedef f32x16 type; };
template <> struct vec16_of<double> { typedef f64x16 type; };
template <class T> using vec16 = typename vec16_of<T>::type;

template <class T>
inline vec16<T> load16(const T* p) {
  vec16<T> v;
  memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
inline void store16(T* p, vec16<T> v) { memcpy(p, &v, sizeof v); }

// 16 values widened to float64 (exact).
template <class T>
inline f64x16 load16_f64(const T* p) { return __builtin_convertvector(load16(p), f64x16); }

// Sum of the 16 lanes as a fixed pairwise tree.
inline double reduce_lanes(f64x16 v) {
  double t[kLanes];
  memcpy(t, &v, sizeof t);
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int l = 0; l < width; ++l) t[l] += t[l + width];
  return t[0];
}

// sum over i < n of f(double(x[i])), element i in lane i % 16. f takes a scalar or an f64x16.
template <class T, class F>
inline double lane_sum(const T* x, int64_t n, F f) {
  f64x16 acc = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += f(load16_f64(x + i));
  for (int l = 0; i + l < n; ++l) acc[l] += f(static_cast<double>(x[i + l]));
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

FASTNN_CPU_NAMESPACE_END

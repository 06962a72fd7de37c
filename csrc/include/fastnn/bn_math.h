// Batch-norm math shared by the CPU and CUDA kernels: per-chunk statistics merged
// with Chan's parallel formula, and the per-channel constants of the output pass.
#pragma once
#include <math.h>
#include "fastnn/config.h"

FASTNN_NAMESPACE_BEGIN

// Statistics of one chunk of a channel, relative to a per-channel shift K (the
// channel's first value): n values with mean K + shifted_mean and sum of squared
// deviations m2. The shift keeps |mean| >> std from cancelling and makes a constant
// channel's statistics exactly (n, K, 0).
struct ChunkStats {
  double n;
  double shifted_mean;
  double m2;
};

// A chunk's statistics from its shifted sums s1 = sum(x - K), s2 = sum((x - K)^2),
// accumulated in float64. Since K is one of the channel's values, (K - mean)^2 <= m2
// of the channel, which bounds the cancellation in s2 - s1^2/n. Rounding can leave a
// tiny negative m2; it is clamped (NaN stays NaN).
FASTNN_HD ChunkStats chunk_from_shifted_sums(double n, double s1, double s2) {
  const double shifted_mean = s1 / n;
  const double m2 = s2 - s1 * shifted_mean;
  return {n, shifted_mean, m2 < 0 ? 0.0 : m2};
}

// Chan, Golub & LeVeque: merge b into a, given b's weight w = b.n / (a.n + b.n)
// (computed once where many channels share the counts). Order-dependent in the last
// bit, so callers merge chunks in a fixed order.
FASTNN_HD void chan_merge_weighted(ChunkStats& a, const ChunkStats& b, double w) {
  const double delta = b.shifted_mean - a.shifted_mean;
  a.shifted_mean += delta * w;
  a.m2 += b.m2 + delta * delta * a.n * w;
  a.n += b.n;
}

FASTNN_HD void chan_merge(ChunkStats& a, const ChunkStats& b) {
  if (b.n == 0) return;
  if (a.n == 0) {
    a = b;
    return;
  }
  chan_merge_weighted(a, b, b.n / (a.n + b.n));
}

// Per-channel constants of the output pass, y = ((x - mean_hi) - mean_lo) * scale + shift.
// mean_hi + mean_lo carries the float64 mean to a float32 kernel without losing the low
// bits (mean_lo is 0 for float64); x - mean_hi is exact near the mean.
template <class T>
struct NormalizeParams {
  T mean_hi, mean_lo, scale, shift;
};

template <class T>
FASTNN_HD NormalizeParams<T> normalize_params(double mean, double invstd, double weight, double bias) {
  NormalizeParams<T> p;
  p.mean_hi = static_cast<T>(mean);
  p.mean_lo = static_cast<T>(mean - static_cast<double>(p.mean_hi));
  p.scale = static_cast<T>(invstd * weight);
  p.shift = static_cast<T>(bias);
  return p;
}

FASTNN_HD double bn_invstd(double biased_var, double eps) { return 1.0 / sqrt(biased_var + eps); }

// The running statistics after a training step over `count` values per channel (> 1),
// as torch updates them: running = (1 - momentum) * running + momentum * batch, with the
// unbiased variance biased_var * m / (m - 1) for running_var. In float64, rounded once
// to T.
template <class T>
FASTNN_HD void bn_update_running(T& running_mean, T& running_var, double mean, double biased_var,
                                 double count, double momentum) {
  running_mean = T((1 - momentum) * double(running_mean) + momentum * mean);
  running_var = T((1 - momentum) * double(running_var) + momentum * biased_var * count / (count - 1));
}

// V is T, or a CPU vector of T (the scalars broadcast).
template <class V, class T>
FASTNN_HD V bn_normalize(V x, const NormalizeParams<T>& p) {
  return ((x - p.mean_hi) - p.mean_lo) * p.scale + p.shift;
}

// Training backward. Sums over a channel's m values, in float64:
//   sum_dy = sum(dy), sum_dy_xc = sum(dy * (x - m0)), sum_xc = sum(x - m0),
// where m0 is the saved mean as given (float32 for float32 data). The batch mean is
// m0 + sum_xc / m, which recovers the bits the float32 saved mean lost.
// dx = c_dy * dy + c_xc * ((x - mean_hi) - mean_lo) + c_0.
template <class T>
struct BackwardParams {
  T mean_hi, mean_lo, c_dy, c_xc, c_0;
};

struct BackwardSums {
  double sum_dy, sum_dy_xc, sum_xc;
};

// Fills dweight/dbias (sum(dy * xhat), sum(dy)) and the dx constants for a channel of m values.
template <class T>
FASTNN_HD BackwardParams<T> backward_train_params(const BackwardSums& s, double m, double m0,
                                                  double invstd, double weight,
                                                  double* dweight, double* dbias) {
  const double delta = s.sum_xc / m;                     // batch mean - m0
  const double sum_dy_xmu = s.sum_dy_xc - delta * s.sum_dy;  // sum(dy * (x - mean))
  *dbias = s.sum_dy;
  *dweight = sum_dy_xmu * invstd;
  const double k = weight * invstd;
  BackwardParams<T> p;
  const double mean = m0 + delta;
  p.mean_hi = static_cast<T>(mean);
  p.mean_lo = static_cast<T>(mean - static_cast<double>(p.mean_hi));
  p.c_dy = static_cast<T>(k);
  p.c_xc = static_cast<T>(-k * invstd * invstd * sum_dy_xmu / m);
  p.c_0 = static_cast<T>(-k * s.sum_dy / m);
  return p;
}

// activation='relu' (fused batch norm + ReLU). V is T or a native vector register of
// T. The forward writes y = bn_relu(z), bitwise the relu activation's result: +0 for
// z < 0, z itself otherwise (-0 stays -0, NaN stays NaN). The backward takes that y and
// passes dy where y > 0, so its mask is exactly the forward's (y > 0 iff z > 0; a NaN z
// gives a NaN y and a 0 gradient, as torch's threshold_backward does).
template <class V>
FASTNN_HD V bn_relu(V z) {
  return z < 0 ? V{} : z;
}

template <class V>
FASTNN_HD V bn_relu_grad(V dy, V y) {
  return y > 0 ? dy : V{};
}

template <class V, class T>
FASTNN_HD V bn_backward_dx(V dy, V x, const BackwardParams<T>& p) {
  return (p.c_dy * dy + p.c_xc * ((x - p.mean_hi) - p.mean_lo)) + p.c_0;
}

FASTNN_NAMESPACE_END

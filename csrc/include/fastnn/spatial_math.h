// Window arithmetic of the spatial ops (im2col, col2im, pooling), shared by the CPU and
// CUDA kernels. Geometry: ops/spatial.h (Window2d).
#pragma once
#include <stdint.h>

#include "fastnn/channel_activation_math.h"
#include "fastnn/config.h"

FASTNN_NAMESPACE_BEGIN

// The positions t in [0, n) whose element start + t*step (step >= 1) lies in [0, size):
// t in [lo, hi), empty when lo >= hi. Along a row of windows: start = j*dw - pw,
// step = sw, n = OW; down one window: start = p*sh - ph, step = dh, n = kh.
struct Span {
  int64_t lo, hi;
};
FASTNN_HD Span inside(int64_t start, int64_t step, int64_t size, int64_t n) {
  int64_t lo = start >= 0 ? 0 : (-start + step - 1) / step;
  int64_t hi = start >= size ? 0 : (size - 1 - start) / step + 1;
  if (hi > n) hi = n;
  if (lo > hi) lo = hi;
  return {lo, hi};
}

// Max pooling: does element v replace the window's maximum m so far? The rule of
// Maxout: strictly greater (ties keep the first element), or the first NaN. Padding is
// never an element: a window's maximum starts at -inf with the index of its first
// element inside x, so a window of -inf values sends its gradient there.
template <class V>
FASTNN_HD auto pool_max_takes(V v, V m) -> decltype(v > m) {
  return maxout_takes(v, m);
}

FASTNN_NAMESPACE_END

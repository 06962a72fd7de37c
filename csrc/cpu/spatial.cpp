// The window ops of Conv2d and the pooling layers on the CPU, compiled once per
// instruction set (CMakeLists.txt). Window arithmetic: fastnn/spatial_math.h.
//
// Every kernel is cut into tasks fixed by the shape: a plane (n, c) of x, a channel's
// rows, a (sample, channel) row of an output. A task owns what it writes, and every
// sum (an element of dx, a pooling window, a bias gradient) is made by one task in a
// fixed order and in float64, so the bits do not depend on the thread count.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/spatial_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

// x[base + q*step] for q in [lo, hi) into out[q], zeros in out[0, lo) and out[hi, n).
template <class T>
inline void copy_row(const T* x, int64_t base, int64_t step, Span qs, T* out, int64_t n) {
  for (int64_t q = 0; q < qs.lo; ++q) out[q] = T(0);
  if (step == 1) {
    if (qs.hi > qs.lo) memcpy(out + qs.lo, x + base + qs.lo, sizeof(T) * (qs.hi - qs.lo));
  } else {
    for (int64_t q = qs.lo; q < qs.hi; ++q) out[q] = x[base + q * step];
  }
  for (int64_t q = qs.hi; q < n; ++q) out[q] = T(0);
}

// The step between a row's windows: S when it is known at compile time (1 or 2, where
// the compiler vectorizes the strided loads), else (S = 0) the run-time value.
template <int S>
struct Step {
  int64_t value;
  int64_t get() const { return S ? S : value; }
};

// body(Step<S>{step}) with S = step for 1 and 2, else 0.
template <class F>
inline void with_step(int64_t step, F body) {
  if (step == 1) body(Step<1>{1});
  else if (step == 2) body(Step<2>{2});
  else body(Step<0>{step});
}

// The spans of a geometry, computed once per call (each costs divisions):
//   window_rows[p]  the kernel rows i of window row p that lie inside x;
//   output_rows[i]  the window rows p whose kernel row i lies inside x;
//   output_cols[j]  the window columns q whose kernel column j lies inside x;
//   first_col[q]    the first kernel column j of window column q inside x.
struct Spans {
  Scratch<Span> window_rows, output_rows, output_cols;
  Scratch<int64_t> first_col;
  explicit Spans(const Window2d& g)
      : window_rows(g.OH), output_rows(g.kh), output_cols(g.kw), first_col(g.OW) {
    for (int64_t p = 0; p < g.OH; ++p) window_rows[p] = inside(p * g.sh - g.ph, g.dh, g.H, g.kh);
    for (int64_t i = 0; i < g.kh; ++i) output_rows[i] = inside(i * g.dh - g.ph, g.sh, g.H, g.OH);
    for (int64_t j = 0; j < g.kw; ++j) output_cols[j] = inside(j * g.dw - g.pw, g.sw, g.W, g.OW);
    for (int64_t q = 0; q < g.OW; ++q) first_col[q] = inside(q * g.sw - g.pw, g.dw, g.W, g.kw).lo;
  }
};

// ------------------------------------------------------------------- im2col, col2im

// Task (c, n): plane (n, c) of x, read once per kernel offset while it is in cache,
// into the kh*kw rows (c, i, j) of cols, columns n*P .. (n+1)*P.
template <class T>
void im2col(const T* x, T* cols, const Window2d& g, int threads) {
  const int64_t P = g.OH * g.OW, NP = g.N * P, plane = g.H * g.W;
  const Spans spans(g);
  parallel_for(g.C * g.N, threads, [&](int64_t t) {
    const int64_t c = t / g.N, n = t % g.N;
    const T* src = x + (n * g.C + c) * plane;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* dst = cols + ((c * g.kh + i) * g.kw + j) * NP + n * P;
        const int64_t column = j * g.dw - g.pw;
        const Span qs = spans.output_cols.data[j];
        for (int64_t p = 0; p < g.OH; ++p) {
          const int64_t ih = p * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) copy_row(src, 0, 1, Span{0, 0}, dst + p * g.OW, g.OW);
          else copy_row(src, ih * g.W + column, g.sw, qs, dst + p * g.OW, g.OW);
        }
      }
  });
}

// acc (H, W), a plane in float64, += what every kernel offset (i, j) of the windows
// read there: src(i, j) gives the offset's (OH, OW) values. Offsets in (i, j) order,
// windows in (p, q) order, so each element's sum has a fixed order.
template <class T, class Step, class Src>
inline void add_windows(double* acc, const Window2d& g, const Spans& spans, Step step, const Src& src) {
  for (int64_t e = 0; e < g.H * g.W; ++e) acc[e] = 0;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) {
      const T* values = src(i, j);
      const int64_t column = j * g.dw - g.pw;
      const Span qs = spans.output_cols.data[j];
      const Span ps = spans.output_rows.data[i];
      for (int64_t p = ps.lo; p < ps.hi; ++p) {
        double* row = acc + (p * g.sh - g.ph + i * g.dh) * g.W;
        const T* v = values + p * g.OW;
        for (int64_t q = qs.lo; q < qs.hi; ++q) row[column + q * step.get()] += double(v[q]);
      }
    }
}

// Task (n, c): plane (n, c) of dx summed in a float64 plane, kernel offset by offset.
template <class T>
void col2im(const T* cols, T* dx, const Window2d& g, int threads) {
  const Spans spans(g);
  const int64_t P = g.OH * g.OW, NP = g.N * P, plane = g.H * g.W;
  const int team = workers(g.N * g.C, threads);
  Scratch<double> sums(team * plane);
  with_step(g.sw, [&](auto step) {
    parallel_for_workers(g.N * g.C, threads, [&](int64_t t, int w) {
      const int64_t n = t / g.C, c = t % g.C;
      double* acc = sums.data + w * plane;
      add_windows<T>(acc, g, spans, step,
                     [&](int64_t i, int64_t j) { return cols + ((c * g.kh + i) * g.kw + j) * NP + n * P; });
      T* out = dx + t * plane;
      for (int64_t e = 0; e < plane; ++e) out[e] = T(acc[e]);
    });
  });
}

// ------------------------------------------------------------ output with the bias

// Task (n, o): y[n, o, :] = product[o, n*P : (n+1)*P] + bias[o].
template <class T>
void bias_output(const T* product, const T* bias, T* y, const BnShape& s, int threads) {
  const int64_t N = s.outer, O = s.channels, P = s.inner;
  parallel_for(N * O, threads, [&](int64_t t) {
    const int64_t n = t / O, o = t % O;
    const T* src = product + o * N * P + n * P;
    T* dst = y + t * P;
    if (!bias) {  // a copy: -0 stays -0
      memcpy(dst, src, sizeof(T) * P);
      return;
    }
    const T b = bias[o];
    for (int64_t p = 0; p < P; ++p) dst[p] = src[p] + b;
  });
}

// Task o: row o of dproduct, and dbias[o] = the sum over n of row (n, o)'s lane sum
// (element p in lane p % 16), in order.
template <class T>
void bias_output_backward(const T* dy, T* dproduct, double* dbias, const BnShape& s, int threads) {
  const int64_t N = s.outer, O = s.channels, P = s.inner;
  parallel_for(O, threads, [&](int64_t o) {
    double total = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* src = dy + (n * O + o) * P;
      memcpy(dproduct + (o * N + n) * P, src, sizeof(T) * P);
      total += lane_sum(src, P, [](const auto& v) { return v; });
    }
    dbias[o] = total;
  });
}

// ------------------------------------------------------------------------ pooling

// p[l * step] for l < n (n <= 16) as a vector, `fill` in the other lanes.
template <class T, int S>
inline Vec16<T> load_step16(const T* p, Step<S> step, int64_t n, T fill) {
  T buf[kLanes];
  if (n == kLanes) {
    if (S == 1) return load16(p);
    for (int64_t l = 0; l < kLanes; ++l) buf[l] = p[l * step.get()];
  } else {
    for (int64_t l = 0; l < kLanes; ++l) buf[l] = l < n ? p[l * step.get()] : fill;
  }
  return load16(buf);
}

// Task: a plane. Each row of windows keeps its running maxima in local buffers: every
// window starts at -inf with the index of its first element inside x, then takes its
// elements kernel offset by kernel offset, 16 windows of the row at a time. The index
// is kept as T (exact: windows have at most 2**24 elements, ops/spatial.cpp).
template <class T, class I>
void max_pool_planes(const T* x, T* y, I* index, const Window2d& g, int threads) {
  const Spans spans(g);
  const int64_t P = g.OH * g.OW, plane = g.H * g.W;
  const int team = workers(g.N * g.C, threads);
  const int64_t width = g.OW + kLanes;  // a row and the lanes a last short vector spills into
  Scratch<T> maxima(team * width), indices(team * width);
  with_step(g.sw, [&](auto step) {
    parallel_for_workers(g.N * g.C, threads, [&](int64_t t, int w) {
      const T* src = x + t * plane;
      T* best = maxima.data + w * width;
      T* k = indices.data + w * width;
      for (int64_t p = 0; p < g.OH; ++p) {
        const int64_t top = p * g.sh - g.ph;
        const Span is = spans.window_rows.data[p];
        for (int64_t q = 0; q < g.OW; ++q) {
          best[q] = T(-INFINITY);
          k[q] = T(is.lo * g.kw + spans.first_col.data[q]);
        }
        for (int64_t i = is.lo; i < is.hi; ++i) {
          const T* row = src + (top + i * g.dh) * g.W;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t column = j * g.dw - g.pw;
            const Span qs = spans.output_cols.data[j];
            const Vec16<T> kk16 = broadcast16(T(i * g.kw + j));
            for (int64_t q = qs.lo; q < qs.hi; q += kLanes) {  // a last short vector: -inf never takes
              const int64_t n = qs.hi - q < kLanes ? qs.hi - q : kLanes;
              const Vec16<T> v = load_step16(row + column + q * step.get(), step, n, T(-INFINITY));
              const Vec16<T> b = load16(best + q);
              const Mask16<T> take = pool_max_takes(v, b);
              store16(best + q, vselect(take, v, b));
              store16(k + q, vselect(take, kk16, load16(k + q)));
            }
          }
        }
        T* y_row = y + t * P + p * g.OW;
        I* index_row = index + t * P + p * g.OW;
        for (int64_t q = 0; q < g.OW; ++q) {
          y_row[q] = best[q];
          index_row[q] = I(k[q]);
        }
      }
    });
  });
}

template <class T>
void max_pool(const T* x, T* y, void* index, int index_bytes, const Window2d& g, int threads) {
  if (index_bytes == 1) max_pool_planes(x, y, static_cast<uint8_t*>(index), g, threads);
  else max_pool_planes(x, y, static_cast<int32_t*>(index), g, threads);
}

// Task: a plane of dx, summed in float64 in the windows' order; an index outside the
// window (not one max_pool wrote) adds nothing. Offset k's place relative to a
// window's first element comes from a table.
template <class T, class I>
void max_pool_backward_planes(const T* dy, const I* index, T* dx, const Window2d& g, int threads) {
  const int64_t P = g.OH * g.OW, plane = g.H * g.W, K = g.kh * g.kw;
  Scratch<int64_t> di(K), dj(K);
  for (int64_t k = 0; k < K; ++k) {
    di[k] = k / g.kw * g.dh;
    dj[k] = k % g.kw * g.dw;
  }
  const int team = workers(g.N * g.C, threads);
  Scratch<double> sums(team * plane);
  parallel_for_workers(g.N * g.C, threads, [&](int64_t t, int w) {
    double* acc = sums.data + w * plane;
    for (int64_t e = 0; e < plane; ++e) acc[e] = 0;
    const T* d = dy + t * P;
    const I* k = index + t * P;
    for (int64_t p = 0; p < g.OH; ++p) {
      const int64_t top = p * g.sh - g.ph;
      for (int64_t q = 0; q < g.OW; ++q) {
        const uint64_t kk = uint64_t(int64_t(k[p * g.OW + q]));
        if (kk >= uint64_t(K)) continue;
        const int64_t ih = top + di[kk], iw = q * g.sw - g.pw + dj[kk];
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) acc[ih * g.W + iw] += double(d[p * g.OW + q]);
      }
    }
    T* out = dx + t * plane;
    for (int64_t e = 0; e < plane; ++e) out[e] = T(acc[e]);
  });
}

template <class T>
void max_pool_backward(const T* dy, const void* index, int index_bytes, T* dx, const Window2d& g, int threads) {
  if (index_bytes == 1) max_pool_backward_planes(dy, static_cast<const uint8_t*>(index), dx, g, threads);
  else max_pool_backward_planes(dy, static_cast<const int32_t*>(index), dx, g, threads);
}

// Task: a plane; each row of windows summed in float64 offset by offset (padding adds
// nothing), then divided by kh*kw.
template <class T>
void avg_pool(const T* x, T* y, const Window2d& g, int threads) {
  const Spans spans(g);
  const int64_t P = g.OH * g.OW, plane = g.H * g.W;
  const double count = double(g.kh * g.kw);
  const int team = workers(g.N * g.C, threads);
  Scratch<double> sums(team * g.OW);
  with_step(g.sw, [&](auto step) {
    parallel_for_workers(g.N * g.C, threads, [&](int64_t t, int w) {
      const T* src = x + t * plane;
      double* acc = sums.data + w * g.OW;
      for (int64_t p = 0; p < g.OH; ++p) {
        for (int64_t q = 0; q < g.OW; ++q) acc[q] = 0;
        const int64_t top = p * g.sh - g.ph;
        const Span is = spans.window_rows.data[p];
        for (int64_t i = is.lo; i < is.hi; ++i) {
          const T* row = src + (top + i * g.dh) * g.W;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t column = j * g.dw - g.pw;
            const Span qs = spans.output_cols.data[j];
            for (int64_t q = qs.lo; q < qs.hi; ++q) acc[q] += double(row[column + q * step.get()]);
          }
        }
        T* out = y + t * P + p * g.OW;
        for (int64_t q = 0; q < g.OW; ++q) out[q] = T(acc[q] / count);
      }
    });
  });
}

// Task: a plane of dx: each window's dy added over the window in float64, offset by
// offset, then divided by kh*kw.
template <class T>
void avg_pool_backward(const T* dy, T* dx, const Window2d& g, int threads) {
  const Spans spans(g);
  const int64_t P = g.OH * g.OW, plane = g.H * g.W;
  const double count = double(g.kh * g.kw);
  const int team = workers(g.N * g.C, threads);
  Scratch<double> sums(team * plane);
  with_step(g.sw, [&](auto step) {
    parallel_for_workers(g.N * g.C, threads, [&](int64_t t, int w) {
      double* acc = sums.data + w * plane;
      const T* d = dy + t * P;
      add_windows<T>(acc, g, spans, step, [d](int64_t, int64_t) { return d; });
      T* out = dx + t * plane;
      for (int64_t e = 0; e < plane; ++e) out[e] = T(acc[e] / count);
    });
  });
}

template <class T>
SpatialKernels<T> spatial_kernels() {
  return {&im2col<T>,   &col2im<T>,          &bias_output<T>, &bias_output_backward<T>,
          &max_pool<T>, &max_pool_backward<T>, &avg_pool<T>,  &avg_pool_backward<T>};
}

}  // namespace

void fill_spatial(KernelTable& table) {
  table.spatial.f32 = spatial_kernels<float>();
  table.spatial.f64 = spatial_kernels<double>();
}

FASTNN_CPU_NAMESPACE_END

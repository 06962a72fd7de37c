// Softmax cross-entropy on the CPU (part of the activations family: activations.cpp
// puts these kernels in its table), compiled once per instruction set. The formulas
// live in fastnn/softmax_math.h.
//
// Logits are (rows, K). Rows are cut into tasks of a fixed number of rows; a task sums
// its rows' losses in float64 in row order, and the tasks' sums are added in task
// order, so the bits depend on the shape only. Two walks, chosen by K:
//  narrow rows (K < kNarrowClasses): 16 rows at a time, row l of the block in vector
//         lane l, so the max, exp, sum and log run on full vectors however small K is;
//  wide rows: one row at a time, vectors along the row: the max, then exp(x - max)
//         into a scratch row while summing, then probs = exp * (1 / sum), streamed
//         past the cache when the arrays don't fit in it.
#include <math.h>
#include <stdint.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/softmax_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kChunk = int64_t(1) << 15;  // values per task (about)
constexpr int64_t kNarrowClasses = 16;
constexpr int64_t kScratchRowBytes = int64_t(256) << 10;  // wider rows use probs as scratch
constexpr int64_t kPageBytes = 4096;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

inline int64_t label_at(const void* labels, int bytes, int64_t i) {
  return bytes == 4 ? int64_t(static_cast<const int32_t*>(labels)[i])
                    : static_cast<const int64_t*>(labels)[i];
}

// Rows per task: about kChunk values, a multiple of 16 for the narrow walk.
inline int64_t rows_per_task(int64_t classes) {
  const int64_t per = classes >= kChunk ? 1 : kChunk / classes;
  return classes < kNarrowClasses ? (per + kLanes - 1) / kLanes * kLanes : per;
}

template <class T>
inline Vec16<T> vmax16(const Vec16<T>& a, const Vec16<T>& b) {  // NaN in b is skipped
  return vselect(b > a, b, a);
}

// Float64 lanes rounded to T.
template <class T>
inline Vec16<T> round16(const Vec16<double>& v) {
  double d[kLanes];
  T t[kLanes];
  store16(d, v);
  for (int l = 0; l < kLanes; ++l) t[l] = T(d[l]);
  return load16(t);
}

// ----------------------------------------------------------------- narrow rows

// Rows [r0, r0 + nr), nr <= 16, K < kNarrowClasses: returns the sum of their losses
// (lanes in order). Lanes past nr hold zeros and are dropped.
template <class T>
double narrow_block(const T* logits, const void* labels, int label_bytes, T* probs, int64_t r0,
                    int64_t nr, int64_t K) {
  T col[kNarrowClasses][kLanes];  // col[k][l] = logits[r0 + l, k]
  T label_logit[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) {
    const T* x = logits + (r0 + l) * K;
    for (int64_t k = 0; k < K; ++k) col[k][l] = l < nr ? x[k] : T(0);
    label_logit[l] = l < nr ? x[label_at(labels, label_bytes, r0 + l)] : T(0);
  }
  Vec16<T> m = load16(col[0]);
  for (int64_t k = 1; k < K; ++k) m = vmax16(m, load16(col[k]));
  Vec16<double> s = zeros16<double>();
  for (int64_t k = 0; k < K; ++k) {
    const Vec16<T> e = softmax_exp(load16(col[k]) - m);
    store16(col[k], e);
    s += load16_f64(col[k]);
  }
  const Vec16<T> inv = round16<T>(1.0 / s);
  for (int64_t k = 0; k < K; ++k) store16(col[k], load16(col[k]) * inv);
  for (int64_t l = 0; l < nr; ++l) {
    T* p = probs + (r0 + l) * K;
    for (int64_t k = 0; k < K; ++k) p[k] = col[k][l];
  }
  T mt[kLanes];
  store16(mt, m);
  const Vec16<double> loss = softmax_row_loss(load16_f64(mt), s, load16_f64(label_logit));
  return reduce_lanes(first_lanes(loss, nr));
}

// ----------------------------------------------------------------- wide rows

// Largest value of a row (K >= 16), four vectors at a time; NaN is skipped here and
// comes back through exp(NaN - max).
template <class T>
T row_max(const T* x, int64_t K) {
  Vec16<T> acc[4];
  for (int u = 0; u < 4; ++u) acc[u] = load16(x);
  int64_t i = 0;
  for (; i + 4 * kLanes <= K; i += 4 * kLanes)
    for (int u = 0; u < 4; ++u) acc[u] = vmax16(acc[u], load16(x + i + u * kLanes));
  for (; i + kLanes <= K; i += kLanes) acc[0] = vmax16(acc[0], load16(x + i));
  acc[0] = vmax16(vmax16(acc[0], acc[1]), vmax16(acc[2], acc[3]));
  T lanes[kLanes];
  store16(lanes, acc[0]);
  T m = lanes[0];
  for (int l = 1; l < kLanes; ++l) m = lanes[l] > m ? lanes[l] : m;
  for (; i < K; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// e[i] = exp(x[i] - m) for i < K; returns their sum in float64, element i in lane i % 16.
// next: the row to fetch into the cache meanwhile (or null).
template <class T>
double exp_row(const T* x, T m, T* e, int64_t K, const T* next) {
  Vec16<double> s = zeros16<double>();
  int64_t i = 0;
  for (; i + kLanes <= K; i += kLanes) {
    // The next row, a line per vector: the hardware prefetchers stop at a page's end,
    // and a row of 1000 classes is one page, so they would leave it to the max pass.
    if (next) __builtin_prefetch(next + i, 0, 3);
    const Vec16<T> v = softmax_exp(load16(x + i) - m);
    store16(e + i, v);
    s += load16_f64(e + i);
  }
  if (i < K) {
    T tail[kLanes] = {};
    for (int64_t j = i; j < K; ++j) tail[j - i] = x[j];
    store16(tail, softmax_exp(load16(tail) - m));
    for (int64_t j = i; j < K; ++j) e[j] = tail[j - i];
    s += first_lanes(load16_f64(tail), K - i);
  }
  return reduce_lanes(s);
}

// p[i] = e[i] * inv; with kStream, p's register-aligned vectors are streamed.
template <bool kStream, class T>
void scale_row(const T* e, T inv, T* p, int64_t K) {
  int64_t i = 0;
  if (kStream) {
    const int64_t head = values_to_alignment(p);
    if (head >= 0 && head < K) {
      for (; i < head; ++i) p[i] = e[i] * inv;
      for (; i + kLanes <= K; i += kLanes) stream16(p + i, load16(e + i) * inv);
    }
  }
  for (; i + kLanes <= K; i += kLanes) store16(p + i, load16(e + i) * inv);
  for (; i < K; ++i) p[i] = e[i] * inv;
}

// Where row x's exponentials go in a worker's scratch (a row plus a page): at half a page
// from x modulo the page, on a 64-byte boundary. A load whose address matches an earlier,
// unfinished store's in the low 12 bits waits for it (4K aliasing): with the scratch row
// at a page offset near x's (or probs' near the scratch's), each load of x (or of the
// scratch) just ahead of the stores would, and the row took up to twice as long.
template <class T>
T* scratch_row(const T* x, T* scratch) {
  const uintptr_t gap = (reinterpret_cast<uintptr_t>(x) + kPageBytes / 2 - reinterpret_cast<uintptr_t>(scratch)) %
                        kPageBytes;
  return scratch + (gap & ~uintptr_t(63)) / sizeof(T);
}

template <bool kStream, class T>
double wide_rows(const T* logits, const void* labels, int label_bytes, T* probs, int64_t r0,
                 int64_t r1, int64_t K, T* scratch) {
  double loss = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = logits + r * K;
    T* p = probs + r * K;
    T* e = scratch ? scratch_row(x, scratch) : p;  // probs may be logits: x is read before p is written
    const T m = row_max(x, K);
    const double label_logit = double(x[label_at(labels, label_bytes, r)]);
    const double s = exp_row(x, m, e, K, r + 1 < r1 ? x + K : nullptr);
    scale_row<kStream>(e, T(1.0 / s), p, K);
    loss += softmax_row_loss(double(m), s, label_logit);
  }
  return loss;
}

}  // namespace

// probs = softmax(logits) row by row; returns the mean loss.
template <class T>
double softmax_xent(const T* logits, const void* labels, int label_bytes, T* probs, int64_t rows,
                    int64_t classes, int threads) {
  const int64_t per = rows_per_task(classes), tasks = chunk_count(rows, per);
  Scratch<double> part(tasks);
  if (classes < kNarrowClasses) {
    parallel_for(tasks, threads, [&](int64_t t) {
      double loss = 0;
      for (int64_t r = t * per; r < rows && r < (t + 1) * per; r += kLanes)
        loss += narrow_block(logits, labels, label_bytes, probs, r, min64(kLanes, rows - r), classes);
      part[t] = loss;
    });
  } else {
    const bool stream = streaming_pays(2 * rows * classes * int64_t(sizeof(T)));
    const bool own_scratch = classes * int64_t(sizeof(T)) <= kScratchRowBytes;
    const int team = workers(tasks, threads);
    // a row, its page offset, and whole cache lines: workers never write to one line
    const int64_t stride = (classes + kPageBytes / int64_t(sizeof(T)) + kLanes - 1) / kLanes * kLanes;
    Scratch<T> scratch(own_scratch ? team * stride : 0);
    parallel_for_workers(tasks, threads, [&](int64_t t, int w) {
      T* row = own_scratch ? scratch.data + w * stride : nullptr;
      const int64_t r0 = t * per, r1 = min64(rows, r0 + per);
      part[t] = stream ? wide_rows<true>(logits, labels, label_bytes, probs, r0, r1, classes, row)
                       : wide_rows<false>(logits, labels, label_bytes, probs, r0, r1, classes, row);
      if (stream) stream_fence();
    });
  }
  double total = 0;
  for (int64_t t = 0; t < tasks; ++t) total += part[t];
  return total / double(rows);
}

// dlogits = (probs - onehot(labels)) / rows; dlogits may be probs.
template <class T>
void softmax_xent_backward(const T* probs, const void* labels, int label_bytes, T* dlogits,
                           int64_t rows, int64_t classes, int threads) {
  const T inv_rows = T(1.0 / double(rows));
  const int64_t per = rows_per_task(classes), tasks = chunk_count(rows, per);
  parallel_for(tasks, threads, [&](int64_t t) {
    for (int64_t r = t * per; r < rows && r < (t + 1) * per; ++r) {
      const int64_t label = label_at(labels, label_bytes, r);
      const T p_label = probs[r * classes + label];  // read before dlogits may overwrite it
      map16(probs + r * classes, dlogits + r * classes, classes,
            [inv_rows](const auto& v) { return v * inv_rows; });
      dlogits[r * classes + label] = (p_label - T(1)) * inv_rows;
    }
  });
}

template double softmax_xent<float>(const float*, const void*, int, float*, int64_t, int64_t, int);
template double softmax_xent<double>(const double*, const void*, int, double*, int64_t, int64_t, int);
template void softmax_xent_backward<float>(const float*, const void*, int, float*, int64_t, int64_t, int);
template void softmax_xent_backward<double>(const double*, const void*, int, double*, int64_t, int64_t, int);

FASTNN_CPU_NAMESPACE_END

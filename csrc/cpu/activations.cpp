// Activations (forward and backward) and softmax cross-entropy on the CPU, compiled
// once per instruction set. The formulas live in fastnn/activation_math.h; this file
// only walks memory. Elementwise work is cut into fixed chunks, and every lane (and
// the scalar tail) runs the same operations, so the bits depend neither on the thread
// count nor on the instruction set.
#include <math.h>
#include <stdint.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/activation_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kChunk = int64_t(1) << 15;  // values per task

// Vectors per step: one vector's math is a long dependency chain (no FMA contraction,
// so each polynomial step is a multiply then an add), and independent chains keep the
// units busy. AVX-512 has 32 registers and one per Vec16<float>: 4 chains; narrower
// levels hold a Vec16 in 2 or 4 registers: 2 chains. The bits don't depend on it.
constexpr int kUnroll = kRegisterBytes == 64 ? 4 : 2;

// y = f(x), kUnroll vectors per step. All are loaded before any is stored, so y == x is fine.
template <class T, class F>
inline void map_unrolled(const T* x, T* y, int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + kUnroll * kLanes <= n; i += kUnroll * kLanes) {
    Vec16<T> v[kUnroll];
    for (int u = 0; u < kUnroll; ++u) v[u] = f(load16(x + i + u * kLanes));
    for (int u = 0; u < kUnroll; ++u) store16(y + i + u * kLanes, v[u]);
  }
  map16(x + i, y + i, n - i, f);
}

// z = f(a, b), kUnroll vectors per step; z may be a or b.
template <class T, class F>
inline void map_unrolled(const T* a, const T* b, T* z, int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + kUnroll * kLanes <= n; i += kUnroll * kLanes) {
    Vec16<T> v[kUnroll];
    for (int u = 0; u < kUnroll; ++u) v[u] = f(load16(a + i + u * kLanes), load16(b + i + u * kLanes));
    for (int u = 0; u < kUnroll; ++u) store16(z + i + u * kLanes, v[u]);
  }
  map16(a + i, b + i, z + i, n - i, f);
}

// y = f(x), chunk by chunk.
template <class T, class F>
void map_chunks(const T* x, T* y, int64_t n, int threads, const F& f) {
  parallel_for(chunk_count(n, kChunk), threads, [&](int64_t t) {
    const int64_t o = t * kChunk;
    map_unrolled(x + o, y + o, chunk_length(t, n, kChunk), f);
  });
}

// Calls body(functor) with the functor for op and its parameters.
template <class T, class Body>
void with_activation(Activation op, ActivationParams p, const Body& body) {
  switch (op) {
    case Activation::relu: return body(Relu{});
    case Activation::leaky_relu: return body(LeakyRelu<T>{T(p.a)});
    case Activation::elu: return body(Elu<T>{T(p.a), T(p.b), T(p.a * p.b)});
    case Activation::gelu: return body(Gelu{});
    case Activation::gelu_tanh: return body(GeluTanh{});
    case Activation::sigmoid: return body(Sigmoid{});
    case Activation::tanh: return body(Tanh{});
    case Activation::silu: return body(Silu{});
    case Activation::softplus: return body(Softplus<T>{T(p.a), T(1.0 / p.a), T(p.b)});
    case Activation::count: break;
  }
}

template <class T>
void forward(Activation op, const T* x, T* y, int64_t n, ActivationParams p, int threads) {
  with_activation<T>(op, p, [&](const auto& f) {
    map_chunks(x, y, n, threads, [&f](const auto& v) { return f.forward(v); });
  });
}

template <class T>
void backward(Activation op, const T* dy, const T* x, T* dx, int64_t n, ActivationParams p,
              int threads) {
  with_activation<T>(op, p, [&](const auto& f) {
    parallel_for(chunk_count(n, kChunk), threads, [&](int64_t t) {
      const int64_t o = t * kChunk;
      map_unrolled(dy + o, x + o, dx + o, chunk_length(t, n, kChunk),
            [&f](const auto& g, const auto& v) { return g * f.grad(v); });
    });
  });
}

template <class T>
void math(MathFunction fn, const T* x, T* y, int64_t n, int threads) {
  switch (fn) {
    case MathFunction::exp: return map_chunks(x, y, n, threads, [](const auto& v) { return vexp(v); });
    case MathFunction::expm1: return map_chunks(x, y, n, threads, [](const auto& v) { return vexpm1(v); });
    case MathFunction::log1p: return map_chunks(x, y, n, threads, [](const auto& v) { return vlog1p(v); });
    case MathFunction::tanh: return map_chunks(x, y, n, threads, [](const auto& v) { return vtanh(v); });
    case MathFunction::erf: return map_chunks(x, y, n, threads, [](const auto& v) { return verf(v); });
    case MathFunction::count: break;
  }
}

// ------------------------------------------------------------------ softmax cross-entropy

inline int64_t label_at(const void* labels, int bytes, int64_t i) {
  return bytes == 4 ? int64_t(static_cast<const int32_t*>(labels)[i])
                    : static_cast<const int64_t*>(labels)[i];
}

// Largest value of a row; NaN is skipped here and comes back through exp(NaN - max).
template <class T>
T row_max(const T* x, int64_t k) {
  T m = T(-INFINITY);
  int64_t i = 0;
  if (k >= kLanes) {
    Vec16<T> acc = load16(x);
    for (i = kLanes; i + kLanes <= k; i += kLanes) {
      const Vec16<T> v = load16(x + i);
      acc = vselect(v > acc, v, acc);
    }
    T lanes[kLanes];
    store16(lanes, acc);
    for (int l = 0; l < kLanes; ++l) m = lanes[l] > m ? lanes[l] : m;
  }
  for (; i < k; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Rows per task: about kChunk values.
inline int64_t rows_per_task(int64_t classes) {
  return classes >= kChunk ? 1 : kChunk / (classes > 0 ? classes : 1);
}

// probs = softmax(logits) row by row (max subtracted); the row's loss is
// max + log(sum exp(x - max)) - x[label], in float64. The mean sums rows in order.
template <class T>
double softmax_xent(const T* logits, const void* labels, int label_bytes, T* probs, int64_t rows,
                    int64_t classes, int threads) {
  Scratch<double> loss(rows);
  const int64_t per = rows_per_task(classes), tasks = (rows + per - 1) / per;
  parallel_for(tasks, threads, [&](int64_t t) {
    for (int64_t r = t * per; r < rows && r < (t + 1) * per; ++r) {
      const T* x = logits + r * classes;
      T* p = probs + r * classes;
      const T m = row_max(x, classes);
      const double label_logit = double(x[label_at(labels, label_bytes, r)]);
      map16(x, p, classes, [m](const auto& v) { return vexp(v - m); });
      const double sum = lane_sum(p, classes, [](const auto& v) { return v; });
      const T inv = T(1.0 / sum);
      map16(p, p, classes, [inv](const auto& v) { return v * inv; });
      loss[r] = (double(m) + log(sum)) - label_logit;
    }
  });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += loss[r];
  return total / double(rows);
}

template <class T>
void softmax_xent_backward(const T* probs, const void* labels, int label_bytes, T* dlogits,
                           int64_t rows, int64_t classes, int threads) {
  const T inv_rows = T(1.0 / double(rows));
  const int64_t per = rows_per_task(classes), tasks = (rows + per - 1) / per;
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

template <class T>
ActivationKernels<T> activation_kernels() {
  return {&forward<T>, &backward<T>, &math<T>, &softmax_xent<T>, &softmax_xent_backward<T>};
}

}  // namespace

void fill_activations(KernelTable& table) {
  table.act_f32 = activation_kernels<float>();
  table.act_f64 = activation_kernels<double>();
}

FASTNN_CPU_NAMESPACE_END

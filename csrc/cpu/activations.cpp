// Activations (forward and backward) and softmax cross-entropy on the CPU, compiled
// once per instruction set. The formulas live in fastnn/activation_math.h; this file
// only walks memory. Elementwise work is cut into fixed chunks, and every lane (and
// the scalar tail) runs the same operations, so the bits depend neither on the thread
// count nor on the instruction set.
#include <math.h>
#include <stdint.h>

#include "cpu/elementwise.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/activation_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kChunk = int64_t(1) << 15;  // values per task

// Calls body(functor) with the functor for op and its parameters.
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

template <class T>
void forward(Activation op, const T* x, T* y, int64_t n, ActivationParams p, int threads) {
  const bool stream = streaming_pays(2 * n * int64_t(sizeof(T)));
  with_activation<T>(op, p, [&](const auto& f) {
    map_chunks(y, n, kChunk, stream, threads, [&f](const auto& v) { return f.forward(v); }, x);
  });
}

template <class T>
void backward(Activation op, const T* dy, const T* x, T* dx, int64_t n, ActivationParams p,
              int threads) {
  const bool stream = streaming_pays(3 * n * int64_t(sizeof(T)));
  with_activation<T>(op, p, [&](const auto& f) {
    map_chunks(dx, n, kChunk, stream, threads,
               [&f](const auto& g, const auto& v) { return g * f.grad(v); }, dy, x);
  });
}

template <class T>
void math(MathFunction fn, const T* x, T* y, int64_t n, int threads) {
  const bool stream = streaming_pays(2 * n * int64_t(sizeof(T)));
  const auto map = [&](const auto& f) { map_chunks(y, n, kChunk, stream, threads, f, x); };
  switch (fn) {
    case MathFunction::exp: return map([](const auto& v) { return vexp(v); });
    case MathFunction::expm1: return map([](const auto& v) { return vexpm1(v); });
    case MathFunction::log1p: return map([](const auto& v) { return vlog1p(v); });
    case MathFunction::tanh: return map([](const auto& v) { return vtanh(v); });
    case MathFunction::erf: return map([](const auto& v) { return verf(v); });
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

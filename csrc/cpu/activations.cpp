// Activations (forward and backward) on the CPU, compiled once per instruction set,
// and the family's kernel table (softmax cross-entropy: activations_softmax.cpp). The
// formulas live in fastnn/activation_math.h; this file only walks memory. Elementwise
// work is cut into fixed chunks, and every lane (and the scalar tail) runs the same
// operations, so the bits depend neither on the thread count nor on the instruction set.
#include <math.h>
#include <stdint.h>

#include "cpu/elementwise.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/activation_math.h"

FASTNN_CPU_NAMESPACE_BEGIN

// activations_softmax.cpp, for T = float and double.
template <class T>
double softmax_xent(const T* logits, const void* labels, int label_bytes, T* probs, int64_t rows,
                    int64_t classes, int threads);
template <class T>
void softmax_xent_backward(const T* probs, const void* labels, int label_bytes, T* dlogits,
                           int64_t rows, int64_t classes, int threads);

namespace {

constexpr int64_t kChunk = int64_t(1) << 15;  // values per task

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

template <class T>
ActivationKernels<T> activation_kernels() {
  return {&forward<T>, &backward<T>, &math<T>, &softmax_xent<T>, &softmax_xent_backward<T>};
}

}  // namespace

void fill_activations(KernelTable& table) {
  table.activations.f32 = activation_kernels<float>();
  table.activations.f64 = activation_kernels<double>();
}

FASTNN_CPU_NAMESPACE_END

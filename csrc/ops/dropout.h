// Dropout for every backend: the arguments its kernels take, the kernels a backend
// provides, and the checks a call passes first (ops/dropout.cpp). The mask rule and
// the keep factor are in fastnn/dropout_math.h.
#pragma once
#include <stdint.h>

#include "fastnn/dropout_math.h"
#include "ops/launch.h"

namespace fastnn {

// Dropout over n elements: y = x * (keep ? scale : 0), keep from the mask rule.
template <class T>
struct DropoutArgs {
  const T* x;                // null: only the mask is wanted
  T* y;                      // may be x
  int64_t n;
  MaskSource source;
  const uint8_t* mask_in;    // source load: (n + 7) / 8 bytes, bit i % 8 of byte i / 8
  uint8_t* mask_out;         // null: not stored; else written, bits past n cleared
  uint64_t seed, offset;     // source generate
  uint32_t threshold;        // source generate: kept iff word >= threshold
  T scale;                   // the factor of kept elements
  int threads;
};

struct DropoutKernels {
  void (*f32)(const DropoutArgs<float>&);
  void (*f64)(const DropoutArgs<double>&);
  // Philox words of blocks first, ..., first + blocks - 1: out[4 * k + w] (for tests).
  void (*philox)(uint64_t seed, uint64_t offset, uint64_t first, int64_t blocks, uint32_t* out);
  template <class T>
  auto get() const {  // the kernel for T
    if constexpr (sizeof(T) == sizeof(float)) return f32;
    else return f64;
  }
};

namespace ops {

struct Array;

// Bytes of the bit-packed mask of n elements: (n + 7) // 8.
inline int64_t mask_bytes(int64_t n) { return (n + 7) / 8; }

// dropout(x, p) -> y, mask; y may be x.
void check_dropout(const Array& x, double p, Array& y, Array& mask);
// dropout_backward(dy, mask?, p) -> dx; dx may be dy. No mask: regenerated from the seed.
void check_dropout_backward(const Array& dy, const Array& mask, double p, Array& dx);
// dropout_mask(n, p) -> mask.
constexpr const char* kCountRule = "in [0, 2**63 - 1]";
void check_dropout_mask(int64_t n, double p, Array& mask);

}  // namespace ops
}  // namespace fastnn

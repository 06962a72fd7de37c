// Dropout on the CPU: the Philox generator (fastnn/philox.h) run on 16 counters at
// once, so one group of 64 elements (16 blocks of 4 words) makes 64 mask bits, and
// the same pass scales the data. Tasks are fixed runs of elements, so the bits and
// the results never depend on the thread count or the instruction set.
#include <stdint.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/philox.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kGroup = 64;                 // elements per 16 Philox blocks
constexpr int64_t kChunk = int64_t(1) << 15;   // elements per task, a multiple of kGroup

// Bit j of m moved to bit 4j (j < 16).
inline uint64_t spread4(uint32_t m) {
#if defined(__BMI2__)
  return _pdep_u64(m, 0x1111111111111111ull);
#else
  uint64_t x = m;
  x = (x | x << 24) & 0x000000FF000000FFull;
  x = (x | x << 12) & 0x000F000F000F000Full;
  x = (x | x << 6) & 0x0303030303030303ull;
  x = (x | x << 3) & 0x1111111111111111ull;
  return x;
#endif
}

// Philox of blocks b0, ..., b0 + 15 (lane j: block b0 + j) with counter
// (b lo, b hi, offset lo, offset hi) and key (seed lo, seed hi).
inline void philox16(uint64_t b0, uint64_t seed, uint64_t offset, Vec16<uint32_t> (&c)[4]) {
  static const uint32_t kIota[kLanes] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  if (uint32_t(b0) <= 0xFFFFFFFFu - 15) {  // no carry into the high word
    c[0] = load16(kIota) + uint32_t(b0);
    c[1] = broadcast16(uint32_t(b0 >> 32));
  } else {
    uint32_t lo[kLanes], hi[kLanes];
    for (int j = 0; j < kLanes; ++j) {
      lo[j] = uint32_t(b0 + j);
      hi[j] = uint32_t((b0 + j) >> 32);
    }
    c[0] = load16(lo);
    c[1] = load16(hi);
  }
  c[2] = broadcast16(uint32_t(offset));
  c[3] = broadcast16(uint32_t(offset >> 32));
  philox4x32_10(c, uint32_t(seed), uint32_t(seed >> 32));
}

// Keep bits of the 64 elements from element e (a multiple of 64): bit k is element
// e + k, which is word k % 4 of block e / 4 + k / 4.
inline uint64_t generate_bits(uint64_t e, uint64_t seed, uint64_t offset, uint32_t threshold) {
  Vec16<uint32_t> c[4];
  philox16(e / 4, seed, offset, c);
  return spread4(ge_bits16(c[0], threshold)) | spread4(ge_bits16(c[1], threshold)) << 1 |
         spread4(ge_bits16(c[2], threshold)) << 2 | spread4(ge_bits16(c[3], threshold)) << 3;
}

// The bits of the len <= 64 elements from element e (a multiple of 64), past len 0.
template <class T>
inline uint64_t group_bits(const DropoutArgs<T>& a, int64_t e, int64_t len) {
  uint64_t bits = 0;
  switch (a.source) {
    case MaskSource::generate:
      bits = generate_bits(uint64_t(e), a.seed, a.offset, a.threshold);
      break;
    case MaskSource::load: {
      uint8_t bytes[8] = {};
      memcpy(bytes, a.mask_in + e / 8, (len + 7) / 8);
      for (int b = 0; b < 8; ++b) bits |= uint64_t(bytes[b]) << (8 * b);
      break;
    }
    case MaskSource::keep_all:
      bits = ~uint64_t(0);
      break;
    case MaskSource::drop_all:
      break;
  }
  return len < kGroup ? bits & ((uint64_t(1) << len) - 1) : bits;
}

template <class T>
void dropout(const DropoutArgs<T>& args) {
  const int64_t tasks = (args.n + kChunk - 1) / kChunk;
  parallel_for(tasks, args.threads, [&args](int64_t t) {
    const DropoutArgs<T> a = args;  // a local copy: stores through y can't alias it
    const int64_t end = a.n < (t + 1) * kChunk ? a.n : (t + 1) * kChunk;
    for (int64_t e = t * kChunk; e < end; e += kGroup) {
      const int64_t len = end - e < kGroup ? end - e : kGroup;
      const uint64_t bits = group_bits(a, e, len);
      if (a.mask_out) {
        uint8_t bytes[8];
        for (int b = 0; b < 8; ++b) bytes[b] = uint8_t(bits >> (8 * b));
        if (len == kGroup)
          memcpy(a.mask_out + e / 8, bytes, 8);  // one store
        else
          memcpy(a.mask_out + e / 8, bytes, (len + 7) / 8);
      }
      if (!a.x) continue;
      // y = x * factor, factor = scale or 0: NaN and inf stay NaN, as x * mask * scale does
      if (len == kGroup) {
        for (int k = 0; k < kGroup / kLanes; ++k)
          store16(a.y + e + k * kLanes, load16(a.x + e + k * kLanes) *
                                            select_bits16(uint32_t(bits >> (k * kLanes)), a.scale));
      } else {
        for (int64_t i = 0; i < len; ++i) a.y[e + i] = a.x[e + i] * ((bits >> i & 1) ? a.scale : T(0));
      }
    }
  });
}

void philox_blocks(uint64_t seed, uint64_t offset, uint64_t first, int64_t blocks, uint32_t* out) {
  for (int64_t k = 0; k < blocks; k += kLanes) {
    Vec16<uint32_t> c[4];
    philox16(first + uint64_t(k), seed, offset, c);
    uint32_t words[4][kLanes];
    for (int w = 0; w < 4; ++w) store16(words[w], c[w]);
    for (int64_t j = 0; j < kLanes && k + j < blocks; ++j)
      for (int w = 0; w < 4; ++w) out[4 * (k + j) + w] = words[w][j];
  }
}

}  // namespace

void fill_dropout(KernelTable& table) {
  table.dropout = {&dropout<float>, &dropout<double>, &philox_blocks};
}

FASTNN_CPU_NAMESPACE_END

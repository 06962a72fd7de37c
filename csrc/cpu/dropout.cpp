// Dropout on the CPU: the Philox generator (fastnn/philox.h; the mask rule in
// fastnn/dropout_math.h) run on 32 counters at once, so one step of 128 elements (32
// blocks of 4 words) makes 128 mask bits, and the same pass scales the data. Tasks are fixed runs of elements, so the bits and
// the results never depend on the thread count or the instruction set.
#include <stdint.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "fastnn/dropout_math.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

constexpr int64_t kStep = 128;                 // elements per step: 32 Philox blocks
constexpr int64_t kChunk = int64_t(1) << 15;   // elements per task, a multiple of kStep

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

// Two sets of 16 counters run as one V in philox4x32_10: the two independent chains,
// interleaved instruction by instruction, hide the multiplies' latency (one chain
// leaves the vector units idle half the time).
struct Vec16x2 {
  Vec16<uint32_t> v[2];
};
inline Vec16x2 operator^(const Vec16x2& a, const Vec16x2& b) { return {{a.v[0] ^ b.v[0], a.v[1] ^ b.v[1]}}; }
inline Vec16x2 operator^(const Vec16x2& a, uint32_t s) { return {{a.v[0] ^ s, a.v[1] ^ s}}; }
inline void mulhilo32(uint32_t a, const Vec16x2& b, Vec16x2& hi, Vec16x2& lo) {
  mulhilo32(a, b.v[0], hi.v[0], lo.v[0]);
  mulhilo32(a, b.v[1], hi.v[1], lo.v[1]);
}

constexpr int64_t kBlocks = 2 * kLanes;  // Philox blocks per step

// The words of blocks b0, ..., b0 + 31: c[w].v[h] lane j is word w of block b0 + 16h + j.
// Counter (b lo, b hi, offset lo, offset hi), key (seed lo, seed hi).
inline void philox32(uint64_t b0, uint64_t seed, uint64_t offset, Vec16x2 (&c)[4]) {
  static const uint32_t kIota[kLanes] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int h = 0; h < 2; ++h) {
    const uint64_t b = b0 + uint64_t(h * kLanes);
    if (uint32_t(b) <= 0xFFFFFFFFu - 15) {  // no carry into the high word
      c[0].v[h] = load16(kIota) + uint32_t(b);
      c[1].v[h] = broadcast16(uint32_t(b >> 32));
    } else {
      uint32_t lo[kLanes], hi[kLanes];
      for (int j = 0; j < kLanes; ++j) {
        lo[j] = uint32_t(b + j);
        hi[j] = uint32_t((b + j) >> 32);
      }
      c[0].v[h] = load16(lo);
      c[1].v[h] = load16(hi);
    }
    c[2].v[h] = broadcast16(uint32_t(offset));
    c[3].v[h] = broadcast16(uint32_t(offset >> 32));
  }
  philox4x32_10(c, uint32_t(seed), uint32_t(seed >> 32));
}

// Keep bits of the 128 elements from element e (a multiple of 128): bit k of bits[h]
// is element e + 64h + k, which is word k % 4 of block e / 4 + 16h + k / 4.
inline void generate_bits(uint64_t e, uint64_t seed, uint64_t offset, uint32_t threshold,
                          uint64_t (&bits)[2]) {
  Vec16x2 c[4];
  philox32(e / 4, seed, offset, c);
  for (int h = 0; h < 2; ++h) {
    bits[h] = 0;
    for (int w = 0; w < 4; ++w) bits[h] |= spread4(ge_bits16(c[w].v[h], threshold)) << w;
  }
}

// The bits of the len <= 128 elements from element e (a multiple of 128), past len 0.
template <class T>
inline void step_bits(const DropoutArgs<T>& a, int64_t e, int64_t len, uint64_t (&bits)[2]) {
  switch (a.source) {
    case MaskSource::generate:
      generate_bits(uint64_t(e), a.seed, a.offset, a.threshold, bits);
      break;
    case MaskSource::load: {
      uint8_t bytes[16] = {};
      memcpy(bytes, a.mask_in + e / 8, (len + 7) / 8);
      for (int h = 0; h < 2; ++h) {
        bits[h] = 0;
        for (int b = 0; b < 8; ++b) bits[h] |= uint64_t(bytes[8 * h + b]) << (8 * b);
      }
      break;
    }
    case MaskSource::keep_all:
      bits[0] = bits[1] = ~uint64_t(0);
      break;
    case MaskSource::drop_all:
      bits[0] = bits[1] = 0;
      break;
  }
  for (int h = 0; h < 2; ++h) {
    const int64_t rest = len - 64 * h;
    if (rest < 64) bits[h] &= rest <= 0 ? 0 : (uint64_t(1) << rest) - 1;
  }
}

template <class T>
void dropout(const DropoutArgs<T>& args) {
  const int64_t tasks = chunk_count(args.n, kChunk);
  // y streamed past the cache when it is too big to stay there; every step's stores
  // are then aligned if y is (steps are kStep values apart).
  const bool stream = args.x && values_to_alignment(args.y) == 0 &&
                      streaming_pays(2 * args.n * int64_t(sizeof(T)) + args.n / 8);
  parallel_for(tasks, args.threads, [&args, stream](int64_t t) {
    const DropoutArgs<T> a = args;  // a local copy: stores through y can't alias it
    const int64_t end = a.n < (t + 1) * kChunk ? a.n : (t + 1) * kChunk;
    for (int64_t e = t * kChunk; e < end; e += kStep) {
      const int64_t len = end - e < kStep ? end - e : kStep;
      uint64_t bits[2];
      step_bits(a, e, len, bits);
      if (a.mask_out) {
        uint8_t bytes[16];
        for (int b = 0; b < 16; ++b) bytes[b] = uint8_t(bits[b / 8] >> (8 * (b % 8)));
        if (len == kStep)
          memcpy(a.mask_out + e / 8, bytes, 16);  // one store
        else
          memcpy(a.mask_out + e / 8, bytes, (len + 7) / 8);
      }
      if (!a.x) continue;
      // y = x * factor, factor = scale or 0: NaN and inf stay NaN, as x * mask * scale does
      if (len == kStep) {
        for (int k = 0; k < kStep / kLanes; ++k) {
          const Vec16<T> y = load16(a.x + e + k * kLanes) *
                             select_bits16(uint32_t(bits[k / 4] >> (k % 4 * kLanes)), a.scale);
          if (stream)
            stream16(a.y + e + k * kLanes, y);
          else
            store16(a.y + e + k * kLanes, y);
        }
      } else {
        for (int64_t i = 0; i < len; ++i)
          a.y[e + i] = a.x[e + i] * ((bits[i / 64] >> (i % 64) & 1) ? a.scale : T(0));
      }
    }
    if (stream) stream_fence();
  });
}

void philox_blocks(uint64_t seed, uint64_t offset, uint64_t first, int64_t blocks, uint32_t* out) {
  for (int64_t k = 0; k < blocks; k += kBlocks) {
    Vec16x2 c[4];
    philox32(first + uint64_t(k), seed, offset, c);
    uint32_t words[4][kBlocks];
    for (int w = 0; w < 4; ++w)
      for (int h = 0; h < 2; ++h) store16(words[w] + h * kLanes, c[w].v[h]);
    for (int64_t j = 0; j < kBlocks && k + j < blocks; ++j)
      for (int w = 0; w < 4; ++w) out[4 * (k + j) + w] = words[w][j];
  }
}

}  // namespace

void fill_dropout(KernelTable& table) {
  table.dropout = {&dropout<float>, &dropout<double>, &philox_blocks};
}

FASTNN_CPU_NAMESPACE_END

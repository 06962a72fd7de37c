// Dropout's rules, shared by every backend: which elements are kept (element i is
// kept iff word i % 4 of Philox4x32-10 at counter (i // 4, offset), key seed, is
// >= round(p * 2**32); docs/design.md), where a call's keep bits come from, and the
// factor kept elements get.
#pragma once
#include <stdint.h>

#include "fastnn/config.h"
#include "fastnn/philox.h"

// Plain data, the same for every instruction set (outside the per-ISA namespace).
namespace fastnn {
// Where the keep bits of a call come from: the generator, a stored mask, or neither
// (every element kept, or none).
enum class MaskSource { generate, load, keep_all, drop_all };
}  // namespace fastnn

FASTNN_NAMESPACE_BEGIN

// The dropout threshold: element kept iff its word r >= round(p * 2**32) (half to
// even, like Python's round). Returned as 64 bits: 2**32 means nothing is kept.
FASTNN_HD uint64_t dropout_threshold(double p) {
  const double t = p * 4294967296.0;  // exact: a power-of-two scale
  double r = double(uint64_t(t));     // t >= 0: truncation is floor
  const double frac = t - r;
  if (frac > 0.5 || (frac == 0.5 && uint64_t(r) % 2 == 1)) r += 1.0;
  return uint64_t(r);
}

// The source of generated keep bits for p: p = 0 keeps everything and p close enough
// to 1 (threshold 2**32) nothing, without running the generator; otherwise the
// generator, with *threshold the 32-bit threshold.
FASTNN_HD MaskSource dropout_mask_source(double p, uint32_t* threshold) {
  const uint64_t t = dropout_threshold(p);
  *threshold = uint32_t(t);
  return t == 0 ? MaskSource::keep_all : t > 0xFFFFFFFFu ? MaskSource::drop_all : MaskSource::generate;
}

// The factor of kept elements, 1 / (1 - p) in float64 (rounded to the data's type by
// the caller, as torch does); 0 at p = 1, where nothing is kept (never 1 / 0).
FASTNN_HD double dropout_keep_scale(double p) { return p < 1 ? 1.0 / (1.0 - p) : 0.0; }

FASTNN_NAMESPACE_END

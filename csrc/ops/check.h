// The checks every op is built from, over array views (ops/array.h). Each op's file
// (ops/<family>.cpp) states its rules with them once; the CPU and CUDA modules run the
// same code. Every check runs before anything is written or allocated: TypeError for
// a wrong kind or dtype or for mixed devices, ValueError for shape, layout, read-only
// output, overlap and bad values, each naming the argument.
#pragma once
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "ops/array.h"
#include "ops/launch.h"

namespace fastnn {
namespace ops {

// Every given array lives on the same device (the first given one's); returns it (cpu
// when nothing is given).
Device require_one_device(std::initializer_list<const Array*> arrays);
Device require_one_device(const std::vector<const Array*>& arrays);

DType require_float(const Array& a);  // float32 or float64
void require_layout(const Array& a);  // C-contiguous and aligned: the kernels index flat memory
// a has x's dtype, a C-contiguous layout and the given shape.
void require_like(const Array& a, const Array& x, const Shape& shape);
void require_writeable(const Array& a);

// An output: if given, like x (dtype, layout, shape) and writeable; if not, it is
// described here (dtype, shape) for the module to allocate.
void expect_output(Array& out, const Array& like, const Shape& shape);
void expect_output(Array& out, DType dtype, const Shape& shape);

// Pairs of argument names whose arrays may be exactly the same memory (an elementwise
// output written over its input).
using Aliases = std::vector<std::pair<const char*, const char*>>;

// No written array overlaps another given array, except the exact aliases allowed.
void require_no_overlap(const std::vector<const Array*>& written, const std::vector<const Array*>& all,
                        const Aliases& allowed = {});

// channel_axis: the values every op with a channel axis takes.
constexpr const char* kChannelAxisRule = "1 (channels first) or -1 (channels last)";
void require_channel_axis(int64_t channel_axis);

void require_positive(double v, const char* name);       // finite and > 0
void require_unit_interval(double v, const char* name);  // in [0, 1]
void require_finite(double v, const char* name);

}  // namespace ops
}  // namespace fastnn

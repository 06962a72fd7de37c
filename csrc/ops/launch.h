// Plain types shared by the families' launch arguments (ops/<family>.h). Included by
// the kernels, which are compiled once per instruction set: no standard-library
// templates here.
#pragma once
#include <stdint.h>

namespace fastnn {

// x viewed as (outer, channels, inner) around its channel axis. Channels-first
// (N, C, *spatial) has outer = N, inner = prod(spatial); channels-last (N, *spatial, C)
// and (N, C) have inner = 1 and outer = the number of rows.
struct BnShape {
  int64_t outer, channels, inner;
};

// A family's kernels for float and for double: table.get<T>() picks one.
template <template <class> class Kernels>
struct PerFloat {
  Kernels<float> f32;
  Kernels<double> f64;
  template <class T>
  const Kernels<T>& get() const {
    if constexpr (sizeof(T) == sizeof(float)) return f32;
    else return f64;
  }
};

}  // namespace fastnn

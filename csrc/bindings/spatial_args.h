// The non-array arguments of the spatial ops as both modules read them: window
// hyper-parameters (an int or a pair of ints each) and shapes (tuples of ints). Their
// values are checked by the op (ops/spatial.cpp).
#pragma once
#include <string>
#include <vector>

#include "bindings/common.h"
#include "ops/spatial.h"

namespace fastnn {
namespace bind {

// An int (both axes) or a tuple or list of two ints, into out[0], out[1].
inline void pair_arg(py::handle obj, const char* name, int64_t* out) {
  const std::string rule = "an int or a pair of ints";
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    if (py::len(obj) != 2)
      throw ops::TypeError(std::string(name) + " must be " + rule + ", got " + std::string(py::repr(obj)));
    for (int d = 0; d < 2; ++d) out[d] = int_arg(obj[py::int_(d)], name, rule.c_str());
    return;
  }
  out[0] = out[1] = int_arg(obj, name, rule.c_str());
}

inline ops::WindowParams window_args(py::handle kernel_size, py::handle stride, py::handle padding,
                                     py::handle dilation) {
  ops::WindowParams p{};
  pair_arg(kernel_size, "kernel_size", p.kernel);
  pair_arg(stride, "stride", p.stride);
  pair_arg(padding, "padding", p.padding);
  if (dilation.is_none()) p.dilation[0] = p.dilation[1] = 1;  // the pools: none
  else pair_arg(dilation, "dilation", p.dilation);
  return p;
}

// A tuple or list of ints (a shape argument).
inline std::vector<int64_t> shape_arg(py::handle obj, const char* name) {
  if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj))
    throw ops::TypeError(std::string(name) + " must be a tuple of ints, got " + std::string(py::repr(obj)));
  std::vector<int64_t> shape;
  for (py::handle v : obj) shape.push_back(int_arg(v, name, "a tuple of ints"));
  return shape;
}

}  // namespace bind
}  // namespace fastnn

// Argument checks shared by the bindings. Every check runs before anything is
// written; a failure raises TypeError (not an array, wrong dtype) or ValueError
// (shape, layout, read-only, overlap, bad hyper-parameter) naming the argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/buffers.h"

namespace fastnn {
namespace bind {

namespace py = pybind11;

inline std::string shape_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// A checked NumPy array and the name it has in the Python signature.
struct Arg {
  py::array array;
  std::string name;
  bool present = true;  // false for an optional argument passed as None
  bool given() const { return present; }
  // Writeability is checked once, by require_writeable, before any kernel runs.
  template <class T> T* data() const { return given() ? static_cast<T*>(const_cast<void*>(array.data())) : nullptr; }
  template <class T> const T* cdata() const { return given() ? static_cast<const T*>(array.data()) : nullptr; }
  uintptr_t lo() const { return reinterpret_cast<uintptr_t>(array.data()); }
  uintptr_t hi() const { return lo() + static_cast<uintptr_t>(array.nbytes()); }
};

// obj must be a numpy.ndarray (None allowed if optional). No conversion ever happens:
// a list or a CuPy array is a TypeError, not a silent copy.
inline Arg ndarray_arg(py::handle obj, const std::string& name, bool optional = false) {
  if (obj.is_none()) {
    if (optional) return {py::array(), name, false};
    throw py::type_error(name + " must be a numpy.ndarray, got None");
  }
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  return {py::reinterpret_borrow<py::array>(obj), name};
}

enum class Float { f32, f64 };

inline Float float_type(const Arg& x) {
  const py::dtype dt = x.array.dtype();
  if (dt.equal(py::dtype::of<float>())) return Float::f32;
  if (dt.equal(py::dtype::of<double>())) return Float::f64;
  throw py::type_error(x.name + " must have dtype float32 or float64 (native byte order), got " +
                       std::string(py::str(dt)));
}

// C-contiguous and aligned: the kernels index flat memory.
inline void require_layout(const Arg& a) {
  const int flags = a.array.flags();
  if (!(flags & py::array::c_style))
    throw py::value_error(a.name + " must be C-contiguous (numpy.ascontiguousarray makes a copy)");
  if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(a.name + " must be aligned to its dtype");
}

// Same dtype as x, C-contiguous, given shape.
inline void require_like(const Arg& a, const Arg& x, const std::vector<py::ssize_t>& shape) {
  if (!a.array.dtype().equal(x.array.dtype()))
    throw py::type_error(a.name + " has dtype " + std::string(py::str(a.array.dtype())) + " but " +
                         x.name + " has " + std::string(py::str(x.array.dtype())) +
                         "; all arrays of one call must share a dtype");
  require_layout(a);
  if (shape_of(a.array) != shape)
    throw py::value_error(a.name + " must have shape " + shape_str(shape) + ", got " +
                          shape_str(shape_of(a.array)));
}

inline void require_writeable(const Arg& a) {
  if (!a.array.writeable()) throw py::value_error(a.name + " is read-only; it must be writeable");
}

inline void require_positive(double v, const char* name) {
  if (!(v > 0) || std::isinf(v))
    throw py::value_error(std::string(name) + " must be a finite number > 0, got " + std::to_string(v));
}

inline void require_unit_interval(double v, const char* name) {
  if (!(v >= 0 && v <= 1))
    throw py::value_error(std::string(name) + " must be in [0, 1], got " + std::to_string(v));
}

inline bool overlap(const Arg& a, const Arg& b) { return a.lo() < b.hi() && b.lo() < a.hi(); }
inline bool same_memory(const Arg& a, const Arg& b) {
  return a.lo() == b.lo() && a.hi() == b.hi();
}

// Each written array must not overlap any other given array, except the exact
// aliases in `allowed` (pairs of names, e.g. an elementwise output over its input).
inline void require_no_overlap(const std::vector<const Arg*>& written,
                               const std::vector<const Arg*>& all,
                               const std::vector<std::pair<std::string, std::string>>& allowed = {}) {
  for (const Arg* w : written) {
    if (!w->given() || w->array.nbytes() == 0) continue;
    for (const Arg* o : all) {
      if (o == w || !o->given() || o->array.nbytes() == 0 || !overlap(*w, *o)) continue;
      bool ok = false;
      for (const auto& p : allowed)
        ok |= ((p.first == w->name && p.second == o->name) ||
               (p.first == o->name && p.second == w->name)) && same_memory(*w, *o);
      if (!ok)
        throw py::value_error(w->name + " overlaps " + o->name +
                              " in memory; the kernel writes " + w->name +
                              " and can't honour that aliasing");
    }
  }
}

// The given output, checked, or a fresh array.
inline Arg output_arg(py::handle obj, const std::string& name, const Arg& like,
                      const std::vector<py::ssize_t>& shape) {
  Arg a = ndarray_arg(obj, name, /*optional=*/true);
  if (!a.given()) return {new_array(like.array.dtype(), shape), name};
  require_like(a, like, shape);
  require_writeable(a);
  return a;
}

}  // namespace bind
}  // namespace fastnn

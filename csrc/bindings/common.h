// What every binding shares: Python objects turned into array views (NumPy arrays and
// __cuda_array_interface__), scalars converted with fastnn's own messages, results for
// the outputs not given, and the GIL released around a kernel. The checks themselves
// are the ops' (ops/<family>.h).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/array.h"

namespace fastnn {
namespace bind {

namespace py = pybind11;
using ops::Array;

// obj as a view: a numpy.ndarray (host memory) or an object with __cuda_array_interface__
// (device). Nothing is converted or copied. None is an absent optional argument
// (a TypeError if not optional); a numpy.ma.MaskedArray (its mask would be ignored)
// and anything else are TypeErrors naming the argument.
Array view(py::handle obj, const std::string& name, bool optional = false);
// An output argument: None means the op describes it and result() allocates it.
inline Array output_view(py::handle obj, const std::string& name) { return view(obj, name, true); }
// A list or tuple of arrays, each named name[i].
std::vector<Array> view_list(py::handle obj, const std::string& name);

// The Python object of an output the checks passed: obj itself if one was given, else
// a new NumPy array of the shape and dtype the op described (out.data is set).
py::object result(py::handle obj, Array& out);

// After the checks: the CPU module runs host arrays only. Device arrays reach it when
// the CUDA module has no kernel for the op; fastnn._backend then raises why
// (NotImplementedError, or RuntimeError when the CUDA module is missing).
void require_host(const char* op, std::initializer_list<const Array*> arrays);

// obj as an integer in [lo, hi]: a Python int or NumPy integer (not a bool), else a
// TypeError; outside the range (at any size) a ValueError "<name> must be <rule>, got
// <the value>".
int64_t int_arg(py::handle obj, const char* name, const char* rule, int64_t lo = INT64_MIN,
                int64_t hi = INT64_MAX);
uint64_t u64_arg(py::handle obj, const char* name);  // [0, 2**64 - 1]
bool flag_arg(py::handle obj, const char* name);     // a bool or numpy.bool_, nothing else
bool is_bool(py::handle obj);                        // a bool or numpy.bool_

// Takes the GIL back after a kernel; never returns while the interpreter is exiting.
void retake_gil(PyThreadState* state);

// f() with the GIL released. The GIL is taken back here, in plain code, not in a
// destructor: at interpreter exit CPython ends a daemon thread that asks for the GIL
// with pthread_exit, a forced unwind, and a forced unwind through a noexcept destructor
// (pybind11's gil_scoped_release) aborts the whole process.
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
  PyThreadState* state = PyEval_SaveThread();
  if constexpr (std::is_void_v<decltype(f())>) {
    try {
      f();
    } catch (...) {
      retake_gil(state);
      throw;
    }
    retake_gil(state);
  } else {
    decltype(f()) r{};
    try {
      r = f();
    } catch (...) {
      retake_gil(state);
      throw;
    }
    retake_gil(state);
    return r;
  }
}

// Raises ops::TypeError as Python's TypeError for the functions of the module being
// defined (ops::ValueError is a std::invalid_argument, which pybind11 raises as
// ValueError).
void register_errors();

// Testing hook: the view of obj as a dict (data, shape, dtype, readonly, device, ...).
py::dict view_dict(py::handle obj, const std::string& name);

}  // namespace bind
}  // namespace fastnn

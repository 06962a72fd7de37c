// The backend-neutral view of one array argument: where its elements are, their shape
// and dtype, whether they may be written, and which device holds them. The bindings make
// views from NumPy arrays and from __cuda_array_interface__ (bindings/common.cpp); the
// checks (ops/check.h) and each op's rules (ops/<family>.cpp) read nothing else, so the
// CPU and CUDA modules share them.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastnn {
namespace ops {

// Raised as Python's TypeError (registered by each module) and ValueError (pybind11
// turns std::invalid_argument into ValueError).
struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

enum class DType { float32, float64, uint8, int32, int64, other };  // native byte order
enum class Device { cpu, cuda };

using Shape = std::vector<int64_t>;

struct Array {
  std::string name;          // as messages call it: "x", "out (y)", "params[2]"
  bool given = false;        // false: None (an absent optional input, or an output to allocate)
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::other;
  std::string dtype_name;    // as NumPy prints it ("float16", ">f4")
  int64_t itemsize = 0;
  bool c_contiguous = true;
  bool aligned = true;       // data is a multiple of the item size
  bool readonly = false;
  Device device = Device::cpu;
  int64_t stream = 0;        // CUDA: the stream the producer named (interface v3), 0 if none

  int ndim() const { return int(shape.size()); }
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t nbytes() const { return size() * itemsize; }
  uintptr_t lo() const { return reinterpret_cast<uintptr_t>(data); }
  uintptr_t hi() const { return lo() + uintptr_t(nbytes()); }
  // Typed pointer; null for an absent optional. Writeability is checked before any kernel.
  template <class T> T* ptr() const { return given ? static_cast<T*>(data) : nullptr; }
};

// An absent optional argument, or an output for the op's checks to describe.
inline Array absent(std::string name) {
  Array a;
  a.name = std::move(name);
  return a;
}

// The dtype of (kind, item size) as NumPy describes it, e.g. ('f', 4) -> float32;
// a non-native byte order is DType::other.
DType dtype_of(char kind, int64_t itemsize, bool native_byte_order);
std::string dtype_str(DType t);  // "float32", ...

// The fields of a __cuda_array_interface__ (versions 2 and 3), as the bindings read them.
struct CudaInterface {
  int64_t version = 0;
  Shape shape;
  std::string typestr;       // e.g. "<f4"
  uintptr_t data = 0;
  bool readonly = false;
  bool has_strides = false;  // strides None means C-contiguous
  Shape strides;             // in bytes
  bool has_mask = false;     // a mask other than None
  bool has_stream = false;   // a stream other than None
  int64_t stream = 0;
};

// The view of a device array. ValueError naming the argument for a version other than
// 2 or 3, a malformed typestr or shape, a stream of 0 (the interface forbids it) or
// strides that are not C-contiguous; TypeError for a mask (fastnn would ignore it).
Array view_of_cuda_interface(const CudaInterface& cai, const std::string& name);

// Numbers in messages, as Python prints them: repr(float) (1.0, 1e-12, -0.0, inf, nan).
std::string repr(double v);
std::string shape_str(const Shape& shape);  // "(2, 3)", "(4,)", "()"

// f(T()) with T the float type of dtype t (float32 or float64; the checks ran first).
template <class F>
decltype(auto) dispatch_float(DType t, F&& f) {
  if (t == DType::float32) return f(float());
  if (t != DType::float64) throw std::logic_error("dispatch_float: " + dtype_str(t) + " is not a float type");
  return f(double());
}

}  // namespace ops
}  // namespace fastnn

#include "bindings/common.h"

#include <unistd.h>
#if defined(__GLIBCXX__)
#include <cxxabi.h>
#endif

#include <pybind11/gil_safe_call_once.h>

#include "bindings/buffers.h"

namespace fastnn {
namespace bind {

namespace {

std::string type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__"));
}

// numpy.ma.MaskedArray and numpy.bool_, looked up once.
py::handle masked_array_type() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> type;
  return type.call_once_and_store_result([] { return py::module_::import("numpy.ma").attr("MaskedArray"); })
      .get_stored();
}
py::handle numpy_bool_type() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> type;
  return type.call_once_and_store_result([] { return py::module_::import("numpy").attr("bool_"); })
      .get_stored();
}

// obj as a Python int: ints and NumPy integers, not bools (TypeError naming the argument).
py::object index_of(py::handle obj, const char* name) {
  PyObject* index = is_bool(obj) ? nullptr : PyNumber_Index(obj.ptr());
  if (!index) {
    PyErr_Clear();
    throw ops::TypeError(std::string(name) + " must be an int, got " + type_name(obj));
  }
  return py::reinterpret_steal<py::object>(index);
}

bool native_byte_order(char byteorder) {
  const uint16_t one = 1;
  const bool little = *reinterpret_cast<const uint8_t*>(&one) == 1;
  return byteorder == '=' || byteorder == '|' || byteorder == (little ? '<' : '>');
}

Array host_view(py::handle obj, const std::string& name) {
  const auto arr = py::reinterpret_borrow<py::array>(obj);
  if (Py_TYPE(obj.ptr()) != py::detail::npy_api::get().PyArray_Type_ &&
      py::isinstance(obj, masked_array_type()))
    throw ops::TypeError(name + " is a numpy.ma.MaskedArray; fastnn would ignore its mask, so it is refused "
                         "(pass its .filled(value), or its .data to drop the mask)");
  Array a;
  a.name = name;
  a.given = true;
  a.data = const_cast<void*>(arr.data());
  a.shape.assign(arr.shape(), arr.shape() + arr.ndim());
  const py::dtype dt = arr.dtype();
  a.itemsize = dt.itemsize();
  a.dtype = ops::dtype_of(dt.kind(), a.itemsize, native_byte_order(dt.byteorder()));
  a.dtype_name = a.dtype == ops::DType::other ? std::string(py::str(dt)) : ops::dtype_str(a.dtype);
  const int flags = arr.flags();
  a.c_contiguous = flags & py::array::c_style;
  a.aligned = flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  a.readonly = !arr.writeable();
  a.device = ops::Device::cpu;
  return a;
}

// A tuple of ints (each a Python int or NumPy integer).
ops::Shape int_tuple(py::handle obj, const std::string& name, const char* field) {
  if (!py::isinstance<py::tuple>(obj))
    throw ops::ValueError(name + " has a malformed __cuda_array_interface__: " + field +
                          " must be a tuple of ints, got " + type_name(obj));
  ops::Shape out;
  for (py::handle v : py::reinterpret_borrow<py::tuple>(obj))
    out.push_back(int_arg(v, (name + ".__cuda_array_interface__['" + field + "'] entry").c_str(),
                          "a 64-bit integer"));
  return out;
}

Array device_view(py::handle obj, const std::string& name) {
  const py::object cai = obj.attr("__cuda_array_interface__");
  if (!py::isinstance<py::dict>(cai))
    throw ops::TypeError(name + ".__cuda_array_interface__ must be a dict, got " + type_name(cai));
  const auto d = py::reinterpret_borrow<py::dict>(cai);
  for (const char* key : {"shape", "typestr", "data", "version"})
    if (!d.contains(key))
      throw ops::ValueError(name + " has a malformed __cuda_array_interface__: no '" + key + "'");
  ops::CudaInterface f;
  f.version = int_arg(d["version"], (name + ".__cuda_array_interface__['version']").c_str(), "2 or 3");
  f.shape = int_tuple(d["shape"], name, "shape");
  if (!py::isinstance<py::str>(d["typestr"]))
    throw ops::ValueError(name + " has a malformed __cuda_array_interface__: typestr must be a str");
  f.typestr = py::str(d["typestr"]);
  const py::object data = d["data"];
  if (!py::isinstance<py::tuple>(data) || py::len(data) != 2)
    throw ops::ValueError(name + " has a malformed __cuda_array_interface__: data must be (pointer, read_only)");
  f.data = uintptr_t(u64_arg(data[py::int_(0)], (name + ".__cuda_array_interface__['data'][0]").c_str()));
  f.readonly = flag_arg(data[py::int_(1)], (name + ".__cuda_array_interface__['data'][1]").c_str());
  if (d.contains("strides") && !d["strides"].is_none()) {
    f.has_strides = true;
    f.strides = int_tuple(d["strides"], name, "strides");
  }
  f.has_mask = d.contains("mask") && !d["mask"].is_none();
  if (d.contains("stream") && !d["stream"].is_none()) {
    f.has_stream = true;
    f.stream = int_arg(d["stream"], (name + ".__cuda_array_interface__['stream']").c_str(), "a CUDA stream handle");
  }
  return ops::view_of_cuda_interface(f, name);
}

py::dtype numpy_dtype(ops::DType t) {
  switch (t) {
    case ops::DType::float32: return py::dtype::of<float>();
    case ops::DType::float64: return py::dtype::of<double>();
    case ops::DType::uint8: return py::dtype::of<uint8_t>();
    case ops::DType::int32: return py::dtype::of<int32_t>();
    case ops::DType::int64: return py::dtype::of<int64_t>();
    case ops::DType::other: break;
  }
  throw std::logic_error("numpy_dtype: no dtype to allocate");
}

}  // namespace

Array view(py::handle obj, const std::string& name, bool optional) {
  if (obj.is_none()) {
    if (optional) return ops::absent(name);
    throw ops::TypeError(name + " must be a numpy.ndarray or a CuPy array, got None");
  }
  if (py::isinstance<py::array>(obj)) return host_view(obj, name);
  if (py::hasattr(obj, "__cuda_array_interface__")) return device_view(obj, name);
  throw ops::TypeError(name + " must be a numpy.ndarray or a CuPy array, got " + type_name(obj));
}

std::vector<Array> view_list(py::handle obj, const std::string& name) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    throw ops::TypeError(name + " must be a list of arrays, got " + type_name(obj));
  std::vector<Array> out;
  size_t i = 0;
  for (py::handle item : obj) out.push_back(view(item, name + "[" + std::to_string(i++) + "]"));
  return out;
}

py::object result(py::handle obj, Array& out) {
  if (out.given) return py::reinterpret_borrow<py::object>(obj);
  py::array a = new_array(numpy_dtype(out.dtype), std::vector<py::ssize_t>(out.shape.begin(), out.shape.end()));
  out.data = a.mutable_data();
  out.given = true;
  return std::move(a);
}

void require_host(const char* op, std::initializer_list<const Array*> arrays) {
  for (const Array* a : arrays) {
    if (!a->given || a->device == ops::Device::cpu) continue;
    py::module_::import("fastnn._backend").attr("refuse_device_arrays")(op);
    throw std::logic_error("fastnn._backend.refuse_device_arrays returned");
  }
}

int64_t int_arg(py::handle obj, const char* name, const char* rule, int64_t lo, int64_t hi) {
  const py::object value = index_of(obj, name);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow || v < lo || v > hi)
    throw ops::ValueError(std::string(name) + " must be " + rule + ", got " + std::string(py::str(value)));
  return v;
}

uint64_t u64_arg(py::handle obj, const char* name) {
  const py::object value = index_of(obj, name);
  const unsigned long long v = PyLong_AsUnsignedLongLong(value.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {  // negative or too large
    PyErr_Clear();
    throw ops::ValueError(std::string(name) + " must be in [0, 2**64 - 1], got " + std::string(py::str(value)));
  }
  return v;
}

bool is_bool(py::handle obj) { return PyBool_Check(obj.ptr()) || py::isinstance(obj, numpy_bool_type()); }

bool flag_arg(py::handle obj, const char* name) {
  if (PyBool_Check(obj.ptr())) return obj.ptr() == Py_True;
  if (py::isinstance(obj, numpy_bool_type())) return PyObject_IsTrue(obj.ptr()) == 1;
  throw ops::TypeError(std::string(name) + " must be a bool, got " + type_name(obj));
}

void retake_gil(PyThreadState* state) {
#if defined(__GLIBCXX__)
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind&) {
    // The interpreter is exiting and ends this thread (a daemon thread: the others
    // were joined) with pthread_exit. Unwinding on would run the callers' destructors,
    // which drop Python references, without the GIL; the thread parks instead until
    // the process is gone, as CPython 3.14 does with such threads itself.
    for (;;) pause();
  }
#else
  PyEval_RestoreThread(state);
#endif
}

void register_errors() {
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ops::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
}

py::dict view_dict(py::handle obj, const std::string& name) {
  const Array a = view(obj, name);
  py::dict d;
  d["data"] = py::int_(reinterpret_cast<uintptr_t>(a.data));
  py::tuple shape(a.shape.size());
  for (size_t k = 0; k < a.shape.size(); ++k) shape[k] = a.shape[k];
  d["shape"] = shape;
  d["dtype"] = a.dtype == ops::DType::other ? a.dtype_name : ops::dtype_str(a.dtype);
  d["itemsize"] = a.itemsize;
  d["readonly"] = a.readonly;
  d["c_contiguous"] = a.c_contiguous;
  d["aligned"] = a.aligned;
  d["device"] = a.device == ops::Device::cpu ? "cpu" : "cuda";
  d["stream"] = a.stream;
  return d;
}

}  // namespace bind
}  // namespace fastnn

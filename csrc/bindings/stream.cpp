// Bindings for the memory-floor loops the benchmarks compare against.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"

#include <vector>

namespace py = pybind11;

namespace fastnn {
namespace bind {
namespace {

Arg float32_stream_arg(py::handle obj, const char* name, bool writeable) {
  Arg a = ndarray_arg(obj, name);
  if (!a.array.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + " must be float32");
  require_layout(a);
  if (writeable) require_writeable(a);
  return a;
}

void stream_copy(py::handle src_obj, py::handle dst_obj) {
  const Arg src = ndarray_arg(src_obj, "src");
  const Arg dst = ndarray_arg(dst_obj, "dst");
  require_layout(src);
  require_layout(dst);
  require_writeable(dst);
  if (src.array.nbytes() != dst.array.nbytes())
    throw py::value_error("src and dst must have the same number of bytes");
  require_no_overlap({&dst}, {&src, &dst});
  py::gil_scoped_release release;
  fastnn::cpu::kernels().stream.copy(src.array.data(), dst.data<char>(), src.array.nbytes(),
                                     fastnn::cpu::num_threads());
}

double stream_read(py::handle src_obj) {
  const Arg src = float32_stream_arg(src_obj, "src", false);
  py::gil_scoped_release release;
  return fastnn::cpu::kernels().stream.read(src.cdata<float>(), src.array.size(),
                                            fastnn::cpu::num_threads());
}

void stream_add(py::handle a_obj, py::handle b_obj, py::handle out_obj) {
  const Arg a = float32_stream_arg(a_obj, "a", false);
  const Arg b = float32_stream_arg(b_obj, "b", false);
  const Arg out = float32_stream_arg(out_obj, "out", true);
  if (a.array.size() != b.array.size() || a.array.size() != out.array.size())
    throw py::value_error("a, b and out must have the same size");
  require_no_overlap({&out}, {&a, &b, &out});
  py::gil_scoped_release release;
  fastnn::cpu::kernels().stream.add(a.cdata<float>(), b.cdata<float>(), out.data<float>(),
                                    a.array.size(), fastnn::cpu::num_threads());
}

void stream_inplace(py::list arrays_obj, double factor) {
  std::vector<Arg> arrays;
  std::vector<float*> ptrs;
  for (py::handle obj : arrays_obj) {
    arrays.push_back(float32_stream_arg(obj, "arrays[i]", true));
    if (arrays.back().array.size() != arrays.front().array.size())
      throw py::value_error("arrays must all have the same size");
    ptrs.push_back(arrays.back().data<float>());
  }
  if (arrays.empty()) return;
  const int64_t n = arrays.front().array.size();
  py::gil_scoped_release release;
  fastnn::cpu::kernels().stream.scale_inplace(ptrs.data(), int64_t(ptrs.size()), n, float(factor),
                                              fastnn::cpu::num_threads());
}

void stream_update(py::handle src_obj, py::list arrays_obj) {
  const Arg src = float32_stream_arg(src_obj, "src", false);
  std::vector<Arg> arrays;
  std::vector<float*> ptrs;
  for (py::handle obj : arrays_obj) {
    arrays.push_back(float32_stream_arg(obj, "arrays[i]", true));
    if (arrays.back().array.size() != src.array.size())
      throw py::value_error("arrays must all have the size of src");
    ptrs.push_back(arrays.back().data<float>());
  }
  py::gil_scoped_release release;
  fastnn::cpu::kernels().stream.update_inplace(src.cdata<float>(), ptrs.data(), int64_t(ptrs.size()),
                                               src.array.size(), fastnn::cpu::num_threads());
}

}  // namespace

void bind_stream(py::module_& m) {
  m.def("stream_copy", &stream_copy, py::arg("src"), py::arg("dst"),
        "Memory floor: dst[:] = src, parallel streaming copy.");
  m.def("stream_read", &stream_read, py::arg("src"),
        "Memory floor: read a float32 array once (returns its sum).");
  m.def("stream_add", &stream_add, py::arg("a"), py::arg("b"), py::arg("out"),
        "Memory floor: out = a + b over float32 arrays (two streams read, one written).");
  m.def("stream_inplace", &stream_inplace, py::arg("arrays"), py::arg("factor") = 1.0,
        "Memory floor: read and write each float32 array in place (a *= factor).");
  m.def("stream_update", &stream_update, py::arg("src"), py::arg("arrays"),
        "Memory floor of an optimizer step: read src, read and write each array in one pass "
        "(a += src).");
}

}  // namespace bind
}  // namespace fastnn

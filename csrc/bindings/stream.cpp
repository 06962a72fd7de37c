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

int64_t stream_read(py::handle src_obj) {
  const Arg src = float32_stream_arg(src_obj, "src", false);
  py::gil_scoped_release release;
  return int64_t(fastnn::cpu::kernels().stream.read(src.cdata<float>(), src.array.size(),
                                                    fastnn::cpu::num_threads()));
}

// The checked arrays of one list argument, all of size n (n < 0: the first sets it).
std::vector<Arg> stream_list(py::handle list, const char* name, bool writeable, int64_t& n) {
  std::vector<Arg> arrays;
  for (py::handle obj : py::list(py::reinterpret_borrow<py::object>(list))) {
    arrays.push_back(float32_stream_arg(obj, (std::string(name) + "[i]").c_str(), writeable));
    if (n < 0) n = arrays.back().array.size();
    if (arrays.back().array.size() != n)
      throw py::value_error("reads, writes and inplace arrays must all have the same size");
  }
  return arrays;
}

template <class T>
std::vector<T*> pointers(const std::vector<Arg>& arrays) {
  std::vector<T*> p;
  for (const Arg& a : arrays) p.push_back(a.data<T>());
  return p;
}

void stream_pass(py::handle reads_obj, py::handle writes_obj, py::handle inplace_obj) {
  int64_t n = -1;
  const std::vector<Arg> reads = stream_list(reads_obj, "reads", false, n);
  const std::vector<Arg> writes = stream_list(writes_obj, "writes", true, n);
  const std::vector<Arg> inplace = stream_list(inplace_obj, "inplace", true, n);
  std::vector<const Arg*> all, written;
  for (const auto* list : {&reads, &writes, &inplace})
    for (const Arg& a : *list) all.push_back(&a);
  for (const auto* list : {&writes, &inplace})
    for (const Arg& a : *list) written.push_back(&a);
  require_no_overlap(written, all);
  const std::vector<const float*> r = pointers<const float>(reads);
  const std::vector<float*> w = pointers<float>(writes), k = pointers<float>(inplace);
  py::gil_scoped_release release;
  fastnn::cpu::kernels().stream.pass(r.data(), int64_t(r.size()), w.data(), int64_t(w.size()),
                                     k.data(), int64_t(k.size()), n < 0 ? 0 : n,
                                     fastnn::cpu::num_threads());
}

}  // namespace

void bind_stream(py::module_& m) {
  m.def("stream_copy", &stream_copy, py::arg("src"), py::arg("dst"),
        "Memory floor: dst[:] = src, parallel streaming copy.");
  m.def("stream_read", &stream_read, py::arg("src"),
        "Memory floor: read a float32 array once (returns the XOR of its 32-bit words).");
  m.def("stream_pass", &stream_pass, py::arg("reads"), py::arg("writes") = py::list(),
        py::arg("inplace") = py::list(),
        "Memory floor of any one-pass pattern over float32 arrays of one size: s = sum of "
        "reads; each inplace array += s (read and written); each writes array = s (written "
        "out of place).");
}

}  // namespace bind
}  // namespace fastnn

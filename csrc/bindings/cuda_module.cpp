// The _cuda extension. Built only when nvcc is found (FASTNN_CUDA=AUTO|ON); it links the
// CUDA runtime statically, so it imports on machines without CUDA. Its functions take
// the CPU module's arguments, run the same checks (ops/) and launch on the call's stream
// (bindings/cuda/launch.h); every family binds its functions from its own file
// (csrc/families.h lists them).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/common.h"
#include "bindings/cuda/launch.h"
#include "cuda/device.h"
#include "families.h"

namespace py = pybind11;

namespace fastnn {
namespace bind {
#define FASTNN_DECLARE_BIND(family, Table) void bind_cuda_##family(py::module_& m);
FASTNN_FAMILIES(FASTNN_DECLARE_BIND)
#undef FASTNN_DECLARE_BIND
}  // namespace bind
}  // namespace fastnn

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastnn CUDA kernels. Use fastnn.functional, not this module.";
  fastnn::bind::register_errors();
  m.attr("__version__") = FASTNN_VERSION;
  m.attr("archs") = py::str(FASTNN_CUDA_ARCHS).attr("split")(",");
  m.def("device_count", &fastnn::cuda::device_count,
        "Number of CUDA devices; 0 when there is no driver or no device.");
  m.def("runtime_version", &fastnn::cuda::runtime_version,
        "CUDA runtime version this module was built with (e.g. 13000).");
  m.def("driver_version", &fastnn::cuda::driver_version, "CUDA driver version (0: no driver).");
  m.def("devices", [] {
    py::list out;
    for (const auto& d : fastnn::cuda::devices()) {
      py::dict e;
      e["index"] = d.index;
      e["name"] = d.name;
      e["compute_capability"] = py::make_tuple(d.major, d.minor);
      e["memory_bytes"] = d.memory_bytes;
      e["multiprocessors"] = d.multiprocessors;
      out.append(e);
    }
    return out;
  }, "Each device: index, name, compute_capability (major, minor), memory_bytes, multiprocessors.");
  m.def("_array_view", &fastnn::bind::view_dict, py::arg("obj"), py::arg("name") = "x",
        "Testing hook: the array view fastnn makes of obj.");
  m.def("_launch_stream", [](py::args arrays) {
    std::vector<fastnn::ops::Array> views;
    for (size_t i = 0; i < arrays.size(); ++i) views.push_back(fastnn::bind::view(arrays[i], "arrays[" + std::to_string(i) + "]", true));
    std::vector<const fastnn::ops::Array*> ptrs;
    for (const auto& v : views) ptrs.push_back(&v);
    return reinterpret_cast<uintptr_t>(fastnn::bind::gpu::stream_for(ptrs));
  }, "Testing hook: the stream handle a call with these arrays launches on (reads no device memory).");

#define FASTNN_BIND(family, Table) fastnn::bind::bind_cuda_##family(m);
  FASTNN_FAMILIES(FASTNN_BIND)
#undef FASTNN_BIND
}

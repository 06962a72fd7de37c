// The _cpu extension: turns Python objects into array views, runs each op's checks
// (ops/), releases the GIL and calls the kernel table chosen at import (cpu/dispatch.h).
// Every family binds its functions from its own file (csrc/families.h lists them).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/buffers.h"
#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "cpu/thread_pool.h"
#include "families.h"

namespace py = pybind11;

namespace fastnn {
namespace bind {
#define FASTNN_DECLARE_BIND(family, Table) void bind_##family(py::module_& m);
FASTNN_FAMILIES(FASTNN_DECLARE_BIND)
#undef FASTNN_DECLARE_BIND
}  // namespace bind
}  // namespace fastnn

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fastnn CPU kernels (SIMD, fastnn's own worker threads). Use fastnn.functional, not this module.";
  fastnn::bind::register_errors();
  // The setters throw std::invalid_argument, which pybind11 raises as ValueError.
  m.attr("__version__") = FASTNN_VERSION;
  m.attr("simd_built") = py::str(FASTNN_ISA_LIST).attr("split")(",");

  m.def("get_simd_level", [] { return std::string(fastnn::cpu::kernels().level); },
        "The instruction set whose kernels are in use.");
  m.def("simd_available", &fastnn::cpu::simd_available,
        "Instruction sets this build has and this CPU runs, best first.");
  m.def("set_simd_level", &fastnn::cpu::set_simd_level, py::arg("name"),
        "Use the kernels compiled for `name` (a level from simd_available()).");
  m.def("get_num_threads", &fastnn::cpu::num_threads);
  m.def("set_num_threads", [](py::handle n) {
    static const std::string rule = "an integer in [1, " + std::to_string(fastnn::cpu::kMaxThreads) + "]";
    const int64_t v = fastnn::bind::int_arg(n, "n", rule.c_str(), INT64_MIN, fastnn::cpu::kMaxThreads);
    if (v < 1) throw fastnn::ops::ValueError("n must be >= 1, got " + std::to_string(v));
    fastnn::cpu::set_num_threads(int(v));
  }, py::arg("n"));
  m.def("spin_microseconds", &fastnn::cpu::spin_microseconds,
        "How long an idle worker thread looks for more work before it sleeps.");
  m.def("set_spin_microseconds", &fastnn::cpu::set_spin_microseconds, py::arg("us"));
  m.def("stream_threshold", &fastnn::cpu::stream_threshold,
        "Elementwise passes over more bytes than this stream their output past the cache.");
  m.def("set_stream_threshold", &fastnn::cpu::set_stream_threshold, py::arg("bytes"),
        "For tests and benchmarks; the default is the last-level cache's size.");
  m.def("cached_bytes", &fastnn::bind::cached_bytes,
        "Bytes of freed result buffers held for reuse.");
  m.def("cache_limit", &fastnn::bind::cache_limit);
  m.def("set_cache_limit", &fastnn::bind::set_cache_limit, py::arg("bytes"));
  m.def("empty_cache", &fastnn::bind::empty_cache, "Free every cached result buffer.");
  m.def("_array_view", &fastnn::bind::view_dict, py::arg("obj"), py::arg("name") = "x",
        "Testing hook: the array view fastnn makes of obj (NumPy or __cuda_array_interface__).");

#define FASTNN_BIND(family, Table) fastnn::bind::bind_##family(m);
  FASTNN_FAMILIES(FASTNN_BIND)
#undef FASTNN_BIND
}

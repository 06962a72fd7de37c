// The _cpu extension: checks arguments, releases the GIL, calls the kernel table
// chosen at import (cpu/dispatch.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>


#include "bindings/buffers.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"
#include "cpu/thread_pool.h"

namespace py = pybind11;

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fastnn CPU kernels (SIMD, fastnn's own worker threads). Use fastnn.functional, not this module.";
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
  m.def("set_num_threads", &fastnn::cpu::set_num_threads, py::arg("n"));
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

  fastnn::bind::bind_batch_norm(m);
  fastnn::bind::bind_optim(m);
  fastnn::bind::bind_stream(m);
  fastnn::bind::bind_dropout(m);
  fastnn::bind::bind_channel_activations(m);
  fastnn::bind::bind_activations(m);
}

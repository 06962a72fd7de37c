// The _cuda extension. Built only when nvcc is found (FASTNN_CUDA=AUTO|ON); it links
// the CUDA runtime statically, so it imports on machines without CUDA installed.
#include <pybind11/pybind11.h>

#include "cuda/device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastnn CUDA kernels. Use fastnn.functional, not this module.";
  m.def("device_count", &fastnn::cuda::device_count,
        "Number of CUDA devices; 0 when there is no driver or no device.");
  m.def("runtime_version", &fastnn::cuda::runtime_version,
        "CUDA runtime version this module was built with (e.g. 13000).");
}

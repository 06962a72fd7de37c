#include "bindings/cuda/launch.h"

#include <cuda_runtime.h>

#include <string>

#include "cuda/device.h"
#include "cuda/kernels.h"

namespace fastnn {
namespace bind {
namespace gpu {

namespace {

py::object cupy_module() {
  try {
    return py::module_::import("cupy");
  } catch (py::error_already_set&) {
    throw cuda::Error(
        "fastnn allocates the results of GPU arrays with CuPy, which cannot be imported; install it "
        "(pip install cupy-cuda13x) or pass out= arrays");
  }
}

const char* numpy_dtype_name(ops::DType t) {
  switch (t) {
    case ops::DType::float32: return "float32";
    case ops::DType::float64: return "float64";
    case ops::DType::uint8: return "uint8";
    case ops::DType::int32: return "int32";
    case ops::DType::int64: return "int64";
    case ops::DType::other: break;
  }
  throw std::logic_error("result: no dtype to allocate");
}

void require_device(const char* op) {
  if (cuda::device_count() > 0) return;
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  cudaGetLastError();
  throw cuda::Error(std::string(op) + ": no CUDA device (" +
                    (err == cudaSuccess ? std::string("the driver reports none")
                                        : std::string(cudaGetErrorString(err))) +
                    "); pass NumPy arrays (cupy.asnumpy) to run on the CPU");
}

}  // namespace

cudaStream_t stream_for(const std::vector<const Array*>& arrays) {
  for (const Array* a : arrays)
    if (a->given && a->stream != 0) return reinterpret_cast<cudaStream_t>(a->stream);
  const py::dict modules = py::module_::import("sys").attr("modules");
  if (modules.contains("cupy")) {
    const py::object s = modules["cupy"].attr("cuda").attr("get_current_stream")();
    return reinterpret_cast<cudaStream_t>(uintptr_t(py::cast<uint64_t>(s.attr("ptr"))));
  }
  return cudaStreamLegacy;
}

cudaStream_t launch_for(const char* op, const std::vector<const Array*>& arrays) {
  for (const Array* a : arrays)
    if (a->given && a->device == ops::Device::cpu)
      throw ops::TypeError(a->name + " is a NumPy array (host memory); fastnn._cuda." + op +
                           " takes GPU arrays (fastnn.functional sends NumPy arrays to the CPU)");
  require_device(op);
  for (const Array* a : arrays) {
    if (!a->given || a->nbytes() == 0) continue;
    cudaPointerAttributes attr;
    cuda::check(cudaPointerGetAttributes(&attr, a->data), op);
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw ops::ValueError(a->name + " has a __cuda_array_interface__ whose pointer is not device memory");
    int current = 0;
    cuda::check(cudaGetDevice(&current), op);
    if (attr.device != current)
      throw ops::ValueError(a->name + " lives on CUDA device " + std::to_string(attr.device) +
                            " but the current device is " + std::to_string(current) +
                            "; call under `with cupy.cuda.Device(" + std::to_string(attr.device) + "):`");
    break;  // the checks put every array of the call on one device kind; the first names it
  }
  return stream_for(arrays);
}

cudaStream_t launch_for(const char* op, std::initializer_list<const Array*> arrays) {
  return launch_for(op, std::vector<const Array*>(arrays));
}

py::object result(py::handle obj, Array& out) {
  if (out.given) return py::reinterpret_borrow<py::object>(obj);
  py::tuple shape(out.shape.size());
  for (size_t k = 0; k < out.shape.size(); ++k) shape[k] = out.shape[k];
  py::object a = cupy_module().attr("empty")(shape, numpy_dtype_name(out.dtype));
  const py::dict cai = a.attr("__cuda_array_interface__");
  out.data = reinterpret_cast<void*>(uintptr_t(py::cast<uint64_t>(py::tuple(cai["data"])[0])));
  out.given = true;
  out.device = ops::Device::cuda;
  return a;
}

}  // namespace gpu
}  // namespace bind
}  // namespace fastnn

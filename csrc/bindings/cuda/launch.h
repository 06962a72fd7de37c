// What the _cuda module's bindings share around a launch: after an op's checks, the
// device and stream of the call (launch_for), results allocated by CuPy (result), and
// device bytes read back when a caller asks for them. The checks themselves are the
// ops' (ops/<family>.h), the same code the CPU module runs.
#pragma once
#include <cuda_runtime_api.h>

#include <initializer_list>
#include <vector>

#include "bindings/common.h"

namespace fastnn {
namespace bind {
namespace gpu {

// The stream a call launches on: the first array that names one in its
// __cuda_array_interface__ (1: the legacy default stream, 2: the per-thread one), else
// CuPy's current stream (cupy.cuda.get_current_stream().ptr) if CuPy is imported, else
// the legacy default stream. Reads no device memory.
cudaStream_t stream_for(const std::vector<const Array*>& arrays);

// After the checks: TypeError for host arrays (the module takes GPU arrays only),
// RuntimeError "no CUDA device ..." when there is none (nothing has touched the arrays
// yet), ValueError when the first array's pointer is not device memory of the current
// device. Returns the call's stream.
cudaStream_t launch_for(const char* op, std::initializer_list<const Array*> arrays);
cudaStream_t launch_for(const char* op, const std::vector<const Array*>& arrays);

// The Python object of an output the checks passed: obj itself if given, else a new
// cupy.empty array (CuPy's memory pool, the current device) of the shape and dtype the
// op described; out.data is set.
py::object result(py::handle obj, Array& out);

}  // namespace gpu
}  // namespace bind
}  // namespace fastnn

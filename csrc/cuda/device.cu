// CUDA device queries for the _cuda module. The kernels come with their families.
#include <cuda_runtime.h>

#include "cuda/device.h"

namespace fastnn {
namespace cuda {

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    // No driver (error 35, insufficient driver) or no device: zero devices, not an error.
    return 0;
  }
  return n;
}

int runtime_version() {
  int v = 0;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : 0;
}

}  // namespace cuda
}  // namespace fastnn

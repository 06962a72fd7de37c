// CUDA device queries and the error check every launch ends with.
#include <cuda_runtime.h>

#include "cuda/device.h"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so later calls start clean
  throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err) + " (" +
              cudaGetErrorName(err) + ")");
}

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    // No driver (error 35, insufficient driver) or no device: zero devices, not an error.
    return 0;
  }
  return n;
}

int runtime_version() {
  int v = 0;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : 0;
}

int driver_version() {
  int v = 0;
  return cudaDriverGetVersion(&v) == cudaSuccess ? v : 0;
}

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> out;
  for (int d = 0, n = device_count(); d < n; ++d) {
    cudaDeviceProp p;
    check(cudaGetDeviceProperties(&p, d), "cudaGetDeviceProperties");
    out.push_back({d, p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount});
  }
  return out;
}

}  // namespace cuda
}  // namespace fastnn

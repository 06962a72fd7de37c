// CUDA device queries for the _cuda module (the kernels are in csrc/cuda/<family>.cu).
#pragma once
#include <string>
#include <vector>

namespace fastnn {
namespace cuda {

int device_count();      // 0 when there is no driver or no device
int runtime_version();   // e.g. 13000 for CUDA 13.0
int driver_version();    // 0 when there is no driver

struct DeviceInfo {
  int index;
  std::string name;
  int major, minor;      // compute capability
  size_t memory_bytes;
  int multiprocessors;
};
std::vector<DeviceInfo> devices();

}  // namespace cuda
}  // namespace fastnn

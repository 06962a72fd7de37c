#pragma once

namespace fastnn {
namespace cuda {

int device_count();      // 0 when there is no driver or no device
int runtime_version();   // e.g. 13000 for CUDA 13.0

}  // namespace cuda
}  // namespace fastnn

// Scratch memory of one launch (per-piece partial sums, per-channel constants): from
// CUDA's stream-ordered allocator on the launch stream, freed on the same stream after
// the kernels that use it, so it is safe on any stream and inside a graph capture.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

class Workspace {
 public:
  explicit Workspace(cudaStream_t stream) : stream_(stream) {}
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() {
    if (base_) cudaFreeAsync(base_, stream_);
  }

  // p will point to count T's once allocate() ran.
  template <class T>
  void reserve(T*& p, int64_t count) {
    if (slots_ == kMaxSlots) throw Error("Workspace: too many slots");
    slot_[slots_] = reinterpret_cast<void**>(&p);
    offset_[slots_++] = bytes_;
    bytes_ += (int64_t(sizeof(T)) * count + 255) / 256 * 256;
  }

  void allocate() {
    void* base = nullptr;
    check(cudaMallocAsync(&base, size_t(bytes_ > 0 ? bytes_ : 256), stream_), "workspace allocation");
    base_ = static_cast<char*>(base);
    for (int k = 0; k < slots_; ++k) *slot_[k] = base_ + offset_[k];
  }

 private:
  static constexpr int kMaxSlots = 4;
  cudaStream_t stream_;
  char* base_ = nullptr;
  int64_t bytes_ = 0;
  int slots_ = 0;
  void** slot_[kMaxSlots];
  int64_t offset_[kMaxSlots];
};

}  // namespace cuda
}  // namespace fastnn

#include "bindings/buffers.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>

namespace fastnn {
namespace bind {

namespace py = pybind11;

namespace {

constexpr size_t kMinCachedBytes = size_t(1) << 20;  // smaller results: NumPy's allocator
constexpr size_t kBlockGranule = size_t(2) << 20;    // one huge page

struct Cache {
  std::mutex mutex;
  std::unordered_multimap<size_t, void*> free_blocks;  // size -> block
  size_t bytes = 0;
  size_t limit = size_t(1) << 30;
};

// Never destroyed: arrays may outlive the module's static destructors.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

void* take_block(size_t size) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.bytes -= size;
      return p;
    }
  }
  void* p = std::aligned_alloc(kBlockGranule, size);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE);  // a hint; fine if the kernel says no
#endif
  return p;
}

void give_back(void* p, size_t size) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.bytes + size <= c.limit) {
      c.free_blocks.emplace(size, p);
      c.bytes += size;
      return;
    }
  }
  std::free(p);
}

struct Block {
  void* data;
  size_t size;
};

}  // namespace

py::array new_array(const py::dtype& dtype, const std::vector<py::ssize_t>& shape) {
  size_t bytes = size_t(dtype.itemsize());
  for (py::ssize_t d : shape) bytes *= size_t(d);
  if (bytes < kMinCachedBytes) return py::array(dtype, shape);
  const size_t size = (bytes + kBlockGranule - 1) / kBlockGranule * kBlockGranule;
  Block* block = new Block{take_block(size), size};
  py::capsule owner(block, [](void* b) {
    Block* blk = static_cast<Block*>(b);
    give_back(blk->data, blk->size);
    delete blk;
  });
  return py::array(dtype, shape, std::vector<py::ssize_t>{}, block->data, owner);
}

size_t cached_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().bytes;
}

size_t cache_limit() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().limit;
}

void set_cache_limit(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(cache().mutex);
    cache().limit = bytes;
  }
  if (cached_bytes() > bytes) empty_cache();
}

void empty_cache() {
  std::unordered_multimap<size_t, void*> blocks;
  {
    std::lock_guard<std::mutex> lock(cache().mutex);
    blocks.swap(cache().free_blocks);
    cache().bytes = 0;
  }
  for (auto& kv : blocks) std::free(kv.second);
}

}  // namespace bind
}  // namespace fastnn

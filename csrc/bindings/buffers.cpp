#include "bindings/buffers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <new>
#include <unordered_map>

namespace fastnn {
namespace bind {

namespace py = pybind11;

namespace {

constexpr size_t kMinCachedBytes = size_t(1) << 20;  // smaller results: NumPy's allocator
constexpr size_t kHugePage = size_t(2) << 20;

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

size_t page_size() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}

// A block of `size` bytes (a whole number of pages) in a mapping of its own, starting on
// a 2 MiB boundary: with the huge-page hint its whole 2 MiB spans can be huge pages,
// while its tail (and a block under 2 MiB) stays in small pages, so no huge page reaches
// past its end and a block holds at most its size in memory.
void* map_block(size_t size) {
  const size_t span = size + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = (reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  const size_t head = start - reinterpret_cast<uintptr_t>(raw);
  if (head) munmap(raw, head);
  if (span - head > size) munmap(reinterpret_cast<void*>(start + size), span - head - size);
#ifdef MADV_HUGEPAGE
  if (size >= kHugePage) madvise(reinterpret_cast<void*>(start), size, MADV_HUGEPAGE);  // a hint
#endif
  return reinterpret_cast<void*>(start);
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
  return map_block(size);
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
  munmap(p, size);
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
  const size_t size = (bytes + page_size() - 1) / page_size() * page_size();
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
  for (auto& kv : blocks) munmap(kv.second, kv.first);
}

}  // namespace bind
}  // namespace fastnn

// Fresh result arrays. Large ones come from a cache of blocks that earlier results
// gave back when Python freed them: a training loop makes the same shapes every step,
// and reusing a block skips the kernel's page faults and zeroing, which for a 50 MB
// result cost about as much as batch norm itself. Small arrays use NumPy's allocator.
// A block is the result's size rounded up to the page (a freed block is reused for a
// result of the same rounded size), so the cache holds less than a page more than the
// results it kept; cached_bytes() counts those rounded sizes.
#pragma once
#include <pybind11/numpy.h>

#include <cstddef>
#include <vector>

namespace fastnn {
namespace bind {

pybind11::array new_array(const pybind11::dtype& dtype, const std::vector<pybind11::ssize_t>& shape);
size_t cached_bytes();                 // held for reuse now
size_t cache_limit();
void set_cache_limit(size_t bytes);    // 0 disables the cache
void empty_cache();                    // frees every cached block

}  // namespace bind
}  // namespace fastnn

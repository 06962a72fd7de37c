// Run-time choice of the kernel table (instruction set) and the thread count.
#pragma once
#include <string>
#include <vector>

#include "cpu/kernels.h"

namespace fastnn {
namespace cpu {

const KernelTable& kernels();                 // the table in use
std::vector<std::string> simd_available();    // levels this CPU runs, best first
void set_simd_level(const std::string& name); // throws std::invalid_argument
constexpr int kMaxThreads = 1024;
int num_threads();
void set_num_threads(int n);                  // 1 <= n <= kMaxThreads
// Outputs of passes over more bytes than this are streamed past the cache (simd.h).
int64_t stream_threshold();
void set_stream_threshold(int64_t bytes);  // bytes >= 0; throws std::invalid_argument

}  // namespace cpu
}  // namespace fastnn

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
int num_threads();
void set_num_threads(int n);                  // n >= 1
bool has_openmp();

}  // namespace cpu
}  // namespace fastnn

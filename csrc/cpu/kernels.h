// The CPU kernel table: one per instruction set, filled by the kernel sources
// (compiled once per level) and chosen by dispatch.cpp. A plain struct of each family's
// kernels (ops/<family>.h), one member per line of csrc/families.h.
#pragma once
#include "families.h"

namespace fastnn {
namespace cpu {

struct KernelTable {
  const char* level;
#define FASTNN_TABLE_MEMBER(family, Table) Table family;
  FASTNN_FAMILIES(FASTNN_TABLE_MEMBER)
#undef FASTNN_TABLE_MEMBER
};

}  // namespace cpu
}  // namespace fastnn

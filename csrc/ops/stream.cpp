#include "ops/stream.h"

#include <string>

#include "ops/array.h"
#include "ops/check.h"

namespace fastnn {
namespace ops {

namespace {

void require_float32(const Array& a, bool writeable) {
  if (a.dtype != DType::float32) throw TypeError(a.name + " must be float32");
  require_layout(a);
  if (writeable) require_writeable(a);
}

}  // namespace

void check_stream_copy(const Array& src, const Array& dst) {
  require_one_device({&src, &dst});
  require_layout(src);
  require_layout(dst);
  require_writeable(dst);
  if (src.nbytes() != dst.nbytes()) throw ValueError("src and dst must have the same number of bytes");
  require_no_overlap({&dst}, {&src, &dst});
}

void check_stream_read(const Array& src) { require_float32(src, false); }

int64_t check_stream_pass(const std::vector<Array>& reads, const std::vector<Array>& writes,
                          const std::vector<Array>& inplace) {
  int64_t n = -1;
  std::vector<const Array*> all, written;
  for (const auto* list : {&reads, &writes, &inplace}) {
    for (const Array& a : *list) {
      require_float32(a, list != &reads);
      if (n < 0) n = a.size();
      if (a.size() != n) throw ValueError("reads, writes and inplace arrays must all have the same size");
      all.push_back(&a);
      if (list != &reads) written.push_back(&a);
    }
  }
  require_one_device(all);
  require_no_overlap(written, all);
  return n < 0 ? 0 : n;
}

}  // namespace ops
}  // namespace fastnn

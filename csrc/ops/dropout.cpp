#include "ops/dropout.h"

#include <string>

#include "ops/check.h"

namespace fastnn {
namespace ops {

namespace {

// A 1-D uint8 mask of (n + 7) // 8 bytes.
void require_mask(const Array& m, int64_t n) {
  if (m.dtype != DType::uint8)
    throw TypeError(m.name + " must have dtype uint8 (the bit-packed mask), got " + m.dtype_name);
  require_layout(m);
  if (m.shape != Shape{mask_bytes(n)})
    throw ValueError(m.name + " must have shape " + shape_str({mask_bytes(n)}) +
                     " ((n + 7) // 8 bytes for n = " + std::to_string(n) + " elements), got " +
                     shape_str(m.shape));
}

void expect_mask_output(Array& m, int64_t n) {
  if (!m.given) return expect_output(m, DType::uint8, {mask_bytes(n)});
  require_mask(m, n);
  require_writeable(m);
}

}  // namespace

void check_dropout(const Array& x, double p, Array& y, Array& mask) {
  require_one_device({&x, &y, &mask});
  require_float(x);
  require_layout(x);
  require_unit_interval(p, "p");
  expect_output(y, x, x.shape);
  expect_mask_output(mask, x.size());
  require_no_overlap({&y, &mask}, {&x, &y, &mask}, {{"out (y)", "x"}});
}

void check_dropout_backward(const Array& dy, const Array& mask, double p, Array& dx) {
  require_one_device({&dy, &mask, &dx});
  require_float(dy);
  require_layout(dy);
  if (mask.given) require_mask(mask, dy.size());
  require_unit_interval(p, "p");
  expect_output(dx, dy, dy.shape);
  require_no_overlap({&dx}, {&dy, &mask, &dx}, {{"out (dx)", "dy"}});
}

void check_dropout_mask(int64_t n, double p, Array& mask) {
  if (n < 0) throw ValueError("n must be >= 0, got " + std::to_string(n));
  require_unit_interval(p, "p");
  expect_mask_output(mask, n);
}

}  // namespace ops
}  // namespace fastnn

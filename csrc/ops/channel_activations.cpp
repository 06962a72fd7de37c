#include "ops/channel_activations.h"

#include <string>

#include "ops/check.h"

namespace fastnn {
namespace ops {

namespace {

// x as (outer, C, inner) around its channel axis: 1 (channels first) or -1 (last).
BnShape channel_shape(const Array& x, int64_t channel_axis, const char* needs) {
  require_channel_axis(channel_axis);
  const int nd = x.ndim();
  const int axis = channel_axis == 1 ? 1 : nd - 1;
  if (axis >= nd || axis < 0)
    throw ValueError(std::string(needs) + " needs x with a channel axis " + std::to_string(channel_axis) +
                     ", got x of shape " + shape_str(x.shape));
  BnShape s{1, x.shape[axis], 1};
  for (int d = 0; d < axis; ++d) s.outer *= x.shape[d];
  for (int d = axis + 1; d < nd; ++d) s.inner *= x.shape[d];
  return s;
}

// The PReLU view of x: (1, 1, n) for a (1,) weight, else around the channel axis, whose
// length the weight must have.
BnShape prelu_shape(const Array& x, const Array& weight, int64_t channel_axis) {
  require_like(weight, x, weight.shape);  // dtype and layout
  if (weight.ndim() != 1)
    throw ValueError("weight must have shape (1,) or (C,), got " + shape_str(weight.shape));
  const int64_t k = weight.shape[0];
  require_channel_axis(channel_axis);
  if (k == 1) return {1, 1, x.size()};
  const BnShape s = channel_shape(x, channel_axis, "a weight of shape (C,)");
  if (k != s.channels)
    throw ValueError("weight must have shape (1,) or (" + std::to_string(s.channels) +
                     ",) (the channels of x along channel_axis " + std::to_string(channel_axis) +
                     "), got " + shape_str(weight.shape));
  return s;
}

// Checks pieces against x; returns x's shape around the channel axis.
BnShape maxout_shape(const Array& x, int64_t pieces, int64_t channel_axis) {
  const BnShape s = channel_shape(x, channel_axis, "maxout");
  if (pieces < 1 || pieces > (int64_t(1) << 24))
    throw ValueError(std::string("pieces must be ") + kPiecesRule + ", got " + std::to_string(pieces));
  if (s.channels % pieces != 0)
    throw ValueError("pieces (" + std::to_string(pieces) + ") must divide the " + std::to_string(s.channels) +
                     " channels of x along channel_axis " + std::to_string(channel_axis));
  return s;
}

Shape maxout_out_shape(const Array& x, int64_t pieces, int64_t channel_axis) {
  Shape shape = x.shape;
  const size_t axis = channel_axis == 1 ? 1 : shape.size() - 1;
  shape[axis] /= pieces;
  return shape;
}

}  // namespace

BnShape check_prelu(const Array& x, const Array& weight, int64_t channel_axis, Array& y) {
  require_one_device({&x, &weight, &y});
  require_float(x);
  require_layout(x);
  const BnShape shape = prelu_shape(x, weight, channel_axis);
  expect_output(y, x, x.shape);
  require_no_overlap({&y}, {&x, &weight, &y}, {{"out", "x"}});
  return shape;
}

BnShape check_prelu_backward(const Array& dy, const Array& x, const Array& weight, int64_t channel_axis,
                             Array& dx, Array& dweight) {
  require_one_device({&x, &dy, &weight, &dx, &dweight});
  require_float(x);
  require_layout(x);
  require_like(dy, x, x.shape);
  const BnShape shape = prelu_shape(x, weight, channel_axis);
  expect_output(dx, x, x.shape);
  expect_output(dweight, x, weight.shape);
  require_no_overlap({&dx, &dweight}, {&dy, &x, &weight, &dx, &dweight},
                     {{"out (dx)", "dy"}, {"out (dx)", "x"}});
  return shape;
}

BnShape check_maxout(const Array& x, int64_t pieces, int64_t channel_axis, Array& y) {
  require_one_device({&x, &y});
  require_float(x);
  require_layout(x);
  const BnShape shape = maxout_shape(x, pieces, channel_axis);
  expect_output(y, x, maxout_out_shape(x, pieces, channel_axis));
  require_no_overlap({&y}, {&x, &y});
  return shape;
}

BnShape check_maxout_backward(const Array& dy, const Array& x, int64_t pieces, int64_t channel_axis,
                              Array& dx) {
  require_one_device({&x, &dy, &dx});
  require_float(x);
  require_layout(x);
  const BnShape shape = maxout_shape(x, pieces, channel_axis);
  require_like(dy, x, maxout_out_shape(x, pieces, channel_axis));
  expect_output(dx, x, x.shape);
  require_no_overlap({&dx}, {&dy, &x, &dx}, {{"out", "x"}});
  return shape;
}

}  // namespace ops
}  // namespace fastnn

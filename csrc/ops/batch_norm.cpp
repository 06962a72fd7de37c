#include "ops/batch_norm.h"

#include <string>

#include "ops/check.h"

namespace fastnn {
namespace ops {

namespace {

// x as (outer, C, inner) for channel_axis 1 (channels first) or -1 (channels last).
BnShape bn_shape(const Array& x, int64_t channel_axis) {
  const int nd = x.ndim();
  if (nd < 2)
    throw ValueError("x must have at least 2 dimensions (N, C, ...), got shape " + shape_str(x.shape));
  require_channel_axis(channel_axis);
  const int axis = channel_axis == 1 ? 1 : nd - 1;
  BnShape s{1, x.shape[axis], 1};
  for (int d = 0; d < axis; ++d) s.outer *= x.shape[d];
  for (int d = axis + 1; d < nd; ++d) s.inner *= x.shape[d];
  return s;
}

// activation: "" (None) or "relu"; returns whether it is the ReLU.
bool relu_activation(const std::string& activation) {
  if (activation.empty()) return false;
  if (activation == "relu") return true;
  throw ValueError("activation must be None or 'relu', got '" + activation + "'");
}

void require_per_channel(const Array& a, const Array& x, int64_t channels) {
  if (a.given) require_like(a, x, {channels});
}

}  // namespace

BnPlan check_batch_norm_forward(const Array& x, const Array& weight, const Array& bias,
                                const Array& running_mean, const Array& running_var, Array& y,
                                Array& mean, Array& invstd, const BnForwardParams& p) {
  require_one_device({&x, &weight, &bias, &running_mean, &running_var, &y, &mean, &invstd});
  require_float(x);
  require_layout(x);
  const BnShape shape = bn_shape(x, p.channel_axis);
  const int64_t C = shape.channels;
  for (const Array* a : {&weight, &bias, &running_mean, &running_var}) require_per_channel(*a, x, C);
  if (running_mean.given != running_var.given)
    throw ValueError(std::string(running_mean.given ? "running_var" : "running_mean") + " is None but " +
                     (running_mean.given ? "running_mean" : "running_var") +
                     " is given; pass both running statistics or neither");
  const bool relu = relu_activation(p.activation);
  require_positive(p.eps, "eps");
  require_unit_interval(p.momentum, "momentum");
  if (p.training) {
    if (shape.outer * shape.inner <= 1)
      throw ValueError("Expected more than 1 value per channel when training, got x of shape " +
                       shape_str(x.shape));
    if (running_mean.given) {
      require_writeable(running_mean);
      require_writeable(running_var);
    }
  } else if (!running_mean.given) {
    throw ValueError("running_mean and running_var are required when training=False");
  }
  expect_output(y, x, x.shape);
  expect_output(mean, x, {C});
  expect_output(invstd, x, {C});
  std::vector<const Array*> written = {&y, &mean, &invstd};
  if (p.training) written.insert(written.end(), {&running_mean, &running_var});
  require_no_overlap(written, {&x, &weight, &bias, &running_mean, &running_var, &y, &mean, &invstd},
                     {{"out (y)", "x"}});
  return {shape, relu};
}

BnPlan check_batch_norm_backward(const Array& dy, const Array& x, const Array& weight,
                                 const Array& mean, const Array& invstd, const Array& y, Array& dx,
                                 Array& dweight, Array& dbias, const BnBackwardParams& p) {
  require_one_device({&x, &dy, &weight, &mean, &invstd, &y, &dx, &dweight, &dbias});
  require_float(x);
  require_layout(x);
  const BnShape shape = bn_shape(x, p.channel_axis);
  const int64_t C = shape.channels;
  require_like(dy, x, x.shape);
  for (const Array* a : {&weight, &mean, &invstd}) require_per_channel(*a, x, C);
  // With the ReLU, y (the forward's output) gives the mask y > 0: exactly the forward's.
  const bool relu = relu_activation(p.activation);
  if (relu && !y.given) throw ValueError("y (the forward output) is required with activation='relu'");
  if (!relu && y.given) throw ValueError("y is only used with activation='relu'; pass y=None");
  if (y.given) require_like(y, x, x.shape);
  expect_output(dx, x, x.shape);
  expect_output(dweight, x, {C});
  expect_output(dbias, x, {C});
  require_no_overlap({&dx, &dweight, &dbias}, {&dy, &x, &y, &weight, &mean, &invstd, &dx, &dweight, &dbias},
                     {{"out (dx)", "dy"}, {"out (dx)", "x"}, {"out (dx)", "y"}});
  return {shape, relu};
}

}  // namespace ops
}  // namespace fastnn

// Batch norm in the _cuda module: arguments to views, the op's checks
// (ops/batch_norm.cpp, as on the CPU), then the kernels on the call's stream. The
// running statistics are updated on the device; nothing waits for the GPU.
#include "bindings/cuda/launch.h"
#include "cuda/kernels.h"
#include "ops/batch_norm.h"
#include "ops/check.h"

namespace fastnn {
namespace bind {
namespace {

py::tuple batch_norm_forward(py::handle x_obj, py::handle weight_obj, py::handle bias_obj,
                             py::handle running_mean_obj, py::handle running_var_obj, py::handle training,
                             double momentum, double eps, py::handle channel_axis,
                             const std::string& activation, py::handle y_obj, py::handle mean_obj,
                             py::handle invstd_obj) {
  const ops::BnForwardParams p{flag_arg(training, "training"), momentum, eps,
                               int_arg(channel_axis, "channel_axis", ops::kChannelAxisRule),
                               activation.c_str()};
  const Array x = view(x_obj, "x"), weight = view(weight_obj, "weight", true),
              bias = view(bias_obj, "bias", true), running_mean = view(running_mean_obj, "running_mean", true),
              running_var = view(running_var_obj, "running_var", true);
  Array y = output_view(y_obj, "out (y)"), mean = output_view(mean_obj, "out (mean)"),
        invstd = output_view(invstd_obj, "out (invstd)");
  const ops::BnPlan plan =
      ops::check_batch_norm_forward(x, weight, bias, running_mean, running_var, y, mean, invstd, p);
  const cudaStream_t stream = gpu::launch_for("batch_norm_forward", {&x, &y, &running_mean});
  py::object y_res = gpu::result(y_obj, y), mean_res = gpu::result(mean_obj, mean),
             invstd_res = gpu::result(invstd_obj, invstd);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::batch_norm_forward<T>({x.ptr<const T>(), y.ptr<T>(), plan.shape, weight.ptr<const T>(),
                                 bias.ptr<const T>(), running_mean.ptr<T>(), running_var.ptr<T>(), mean.ptr<T>(),
                                 invstd.ptr<T>(), p.eps, p.momentum, p.training, plan.relu},
                                stream);
  });
  return py::make_tuple(y_res, mean_res, invstd_res);
}

py::tuple batch_norm_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj, py::handle mean_obj,
                              py::handle invstd_obj, py::handle training, py::handle channel_axis,
                              const std::string& activation, py::handle y_obj, py::handle dx_obj,
                              py::handle dweight_obj, py::handle dbias_obj) {
  const ops::BnBackwardParams p{flag_arg(training, "training"),
                                int_arg(channel_axis, "channel_axis", ops::kChannelAxisRule),
                                activation.c_str()};
  const Array x = view(x_obj, "x"), dy = view(dy_obj, "dy"), weight = view(weight_obj, "weight", true),
              mean = view(mean_obj, "mean"), invstd = view(invstd_obj, "invstd"), y = view(y_obj, "y", true);
  Array dx = output_view(dx_obj, "out (dx)"), dweight = output_view(dweight_obj, "out (dweight)"),
        dbias = output_view(dbias_obj, "out (dbias)");
  const ops::BnPlan plan = ops::check_batch_norm_backward(dy, x, weight, mean, invstd, y, dx, dweight, dbias, p);
  const cudaStream_t stream = gpu::launch_for("batch_norm_backward", {&x, &dy, &dx});
  py::object dx_res = gpu::result(dx_obj, dx), dweight_res = gpu::result(dweight_obj, dweight),
             dbias_res = gpu::result(dbias_obj, dbias);
  ops::dispatch_float(x.dtype, [&](auto t) {
    using T = decltype(t);
    cuda::batch_norm_backward<T>({dy.ptr<const T>(), x.ptr<const T>(), y.ptr<const T>(), dx.ptr<T>(), plan.shape,
                                  weight.ptr<const T>(), mean.ptr<const T>(), invstd.ptr<const T>(),
                                  dweight.ptr<T>(), dbias.ptr<T>(), p.training},
                                 stream);
  });
  return py::make_tuple(dx_res, dweight_res, dbias_res);
}

}  // namespace

void bind_cuda_batch_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("training"), py::arg("momentum"),
        py::arg("eps"), py::arg("channel_axis"), py::arg("activation"), py::arg("y"), py::arg("mean"),
        py::arg("invstd"));
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"), py::arg("weight"),
        py::arg("mean"), py::arg("invstd"), py::arg("training"), py::arg("channel_axis"),
        py::arg("activation"), py::arg("y"), py::arg("dx"), py::arg("dweight"), py::arg("dbias"));
}

}  // namespace bind
}  // namespace fastnn

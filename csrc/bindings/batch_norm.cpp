// Batch norm in the _cpu module: arguments to views, the op's checks
// (ops/batch_norm.cpp), then the kernels with the GIL released and the per-channel
// finish (fastnn/bn_math.h) on the host.
#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "fastnn/bn_math.h"
#include "ops/batch_norm.h"
#include "ops/check.h"

#include <vector>

namespace fastnn {
namespace bind {
namespace {

template <class T>
void run_forward(const Array& x, const Array& y, const Array& weight, const Array& bias,
                 const Array& running_mean, const Array& running_var, const Array& mean_out,
                 const Array& invstd_out, const ops::BnPlan& plan, const ops::BnForwardParams& p) {
  const BnShape shape = plan.shape;
  const int64_t C = shape.channels;
  std::vector<double> mean(C), var(C), invstd(C);
  BnForwardArgs<T> a{x.ptr<const T>(), y.ptr<T>(), shape, weight.ptr<const T>(), bias.ptr<const T>(),
                     p.eps, mean.data(), var.data(), invstd.data(), cpu::num_threads(), plan.relu};
  const auto& kernels = cpu::kernels().batch_norm.get<T>();
  const bool empty = shape.outer * shape.inner * C == 0;
  T* rm = running_mean.ptr<T>();
  T* rv = running_var.ptr<T>();
  if (p.training) {
    if (!empty) kernels.forward_train(a);
    const double count = double(shape.outer) * double(shape.inner);
    for (int64_t c = 0; c < C; ++c) {
      invstd[c] = bn_invstd(var[c], p.eps);
      if (rm) bn_update_running(rm[c], rv[c], mean[c], var[c], count, p.momentum);
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = double(rm[c]);
      invstd[c] = bn_invstd(double(rv[c]), p.eps);
    }
    if (!empty) kernels.forward_eval(a);
  }
  T* mo = mean_out.ptr<T>();
  T* io = invstd_out.ptr<T>();
  for (int64_t c = 0; c < C; ++c) {
    mo[c] = T(mean[c]);
    io[c] = T(invstd[c]);
  }
}

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
  require_host("batch_norm_forward", {&x});
  py::object y_res = result(y_obj, y), mean_res = result(mean_obj, mean), invstd_res = result(invstd_obj, invstd);
  without_gil([&] {
    ops::dispatch_float(x.dtype, [&](auto t) {
      run_forward<decltype(t)>(x, y, weight, bias, running_mean, running_var, mean, invstd, plan, p);
    });
  });
  return py::make_tuple(y_res, mean_res, invstd_res);
}

template <class T>
void run_backward(const Array& dy, const Array& x, const Array& y, const Array& dx, const Array& weight,
                  const Array& mean, const Array& invstd, const Array& dweight, const Array& dbias,
                  BnShape shape, bool training) {
  const int64_t C = shape.channels;
  std::vector<double> dw(C, 0.0), db(C, 0.0);
  BnBackwardArgs<T> a{dy.ptr<const T>(), x.ptr<const T>(), dx.ptr<T>(), shape, weight.ptr<const T>(),
                      mean.ptr<const T>(), invstd.ptr<const T>(), dw.data(), db.data(), cpu::num_threads(),
                      y.ptr<const T>()};
  const auto& kernels = cpu::kernels().batch_norm.get<T>();
  if (shape.outer * shape.inner * C > 0) (training ? kernels.backward_train : kernels.backward_eval)(a);
  T* dwo = dweight.ptr<T>();
  T* dbo = dbias.ptr<T>();
  for (int64_t c = 0; c < C; ++c) {
    dwo[c] = T(dw[c]);
    dbo[c] = T(db[c]);
  }
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
  const ops::BnPlan plan =
      ops::check_batch_norm_backward(dy, x, weight, mean, invstd, y, dx, dweight, dbias, p);
  require_host("batch_norm_backward", {&x});
  py::object dx_res = result(dx_obj, dx), dweight_res = result(dweight_obj, dweight),
             dbias_res = result(dbias_obj, dbias);
  without_gil([&] {
    ops::dispatch_float(x.dtype, [&](auto t) {
      run_backward<decltype(t)>(dy, x, y, dx, weight, mean, invstd, dweight, dbias, plan.shape, p.training);
    });
  });
  return py::make_tuple(dx_res, dweight_res, dbias_res);
}

}  // namespace

void bind_batch_norm(py::module_& m) {
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

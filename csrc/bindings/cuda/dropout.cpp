// Dropout in the _cuda module: arguments to views, the op's checks (ops/dropout.cpp), the
// mask source and keep factor (fastnn/dropout_math.h), then the kernel on the call's
// stream: the masks are bit-identical to the CPU's for the same (seed, offset, n, p).
#include "bindings/cuda/launch.h"
#include "cuda/kernels.h"
#include "fastnn/dropout_math.h"
#include "ops/dropout.h"

namespace fastnn {
namespace bind {
namespace {

const Array kNone = ops::absent("");

template <class T>
void run(const Array& x, const Array& y, const Array& mask_in, const Array& mask_out, int64_t n, MaskSource source,
         uint64_t seed, uint64_t offset, uint32_t threshold, double scale, cudaStream_t stream) {
  DropoutArgs<T> a{x.ptr<const T>(), y.ptr<T>(), n, source, mask_in.ptr<const uint8_t>(), mask_out.ptr<uint8_t>(),
                   seed, offset, threshold, T(scale), 0};
  if (a.n == 0) return;
  if (a.x && source == MaskSource::keep_all && scale == 1) {  // identity: y = x, bitwise
    if (a.x != a.y)
      cuda::check(cudaMemcpyAsync(a.y, a.x, size_t(a.n) * sizeof(T), cudaMemcpyDeviceToDevice, stream), "dropout");
    a.x = nullptr;  // only the mask is left to write
  }
  cuda::dropout<T>(a, stream);
}

py::tuple dropout(py::handle x_obj, double p, py::handle seed_obj, py::handle offset_obj, py::handle training_obj,
                  py::handle y_obj, py::handle mask_obj) {
  const uint64_t seed = u64_arg(seed_obj, "seed"), offset = u64_arg(offset_obj, "offset");
  const bool training = flag_arg(training_obj, "training");
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out (y)"), mask = output_view(mask_obj, "out (mask)");
  ops::check_dropout(x, p, y, mask);
  const cudaStream_t stream = gpu::launch_for("dropout", {&x, &y, &mask});
  py::object y_res = gpu::result(y_obj, y), mask_res = gpu::result(mask_obj, mask);
  uint32_t threshold = 0;
  const MaskSource source = training ? dropout_mask_source(p, &threshold) : MaskSource::keep_all;
  const double scale = training ? dropout_keep_scale(p) : 1.0;
  ops::dispatch_float(x.dtype, [&](auto t) {
    run<decltype(t)>(x, y, kNone, mask, x.size(), source, seed, offset, threshold, scale, stream);
  });
  return py::make_tuple(y_res, mask_res);
}

py::object dropout_backward(py::handle dy_obj, py::handle mask_obj, double p, py::handle seed_obj,
                            py::handle offset_obj, py::handle dx_obj) {
  const uint64_t seed = u64_arg(seed_obj, "seed"), offset = u64_arg(offset_obj, "offset");
  const Array dy = view(dy_obj, "dy"), mask = view(mask_obj, "mask", true);
  Array dx = output_view(dx_obj, "out (dx)");
  ops::check_dropout_backward(dy, mask, p, dx);
  const cudaStream_t stream = gpu::launch_for("dropout_backward", {&dy, &mask, &dx});
  py::object dx_res = gpu::result(dx_obj, dx);
  uint32_t threshold = 0;
  const MaskSource source = mask.given ? MaskSource::load : dropout_mask_source(p, &threshold);
  ops::dispatch_float(dy.dtype, [&](auto t) {
    run<decltype(t)>(dy, dx, mask, kNone, dy.size(), source, seed, offset, threshold, dropout_keep_scale(p), stream);
  });
  return dx_res;
}

py::object dropout_mask(py::handle n_obj, double p, py::handle seed_obj, py::handle offset_obj, py::handle mask_obj) {
  const int64_t n = int_arg(n_obj, "n", ops::kCountRule);
  const uint64_t seed = u64_arg(seed_obj, "seed"), offset = u64_arg(offset_obj, "offset");
  Array mask = output_view(mask_obj, "out");
  ops::check_dropout_mask(n, p, mask);
  const cudaStream_t stream = gpu::launch_for("dropout_mask", {&mask});
  py::object mask_res = gpu::result(mask_obj, mask);
  uint32_t threshold = 0;
  const MaskSource source = dropout_mask_source(p, &threshold);
  run<float>(kNone, kNone, kNone, mask, n, source, seed, offset, threshold, 1.0, stream);
  return mask_res;
}

}  // namespace

void bind_cuda_dropout(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("training"),
        py::arg("y"), py::arg("mask"));
  m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"), py::arg("seed"),
        py::arg("offset"), py::arg("dx"));
  m.def("dropout_mask", &dropout_mask, py::arg("n"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::arg("mask"));
}

}  // namespace bind
}  // namespace fastnn

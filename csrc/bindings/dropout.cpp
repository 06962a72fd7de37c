// Dropout in the _cpu module: arguments to views, the op's checks (ops/dropout.cpp),
// the mask source and keep factor (fastnn/dropout_math.h), then the kernel with the
// GIL released. seed and offset arrive checked by functional.py.
#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "fastnn/dropout_math.h"
#include "ops/dropout.h"

namespace fastnn {
namespace bind {
namespace {

const Array kNone = ops::absent("");

// y = x * keep / (1 - p) over x's elements (or, with x absent, only the mask).
template <class T>
void run(const Array& x, const Array& y, const Array& mask_in, const Array& mask_out, int64_t n,
         MaskSource source, uint64_t seed, uint64_t offset, uint32_t threshold, double scale) {
  DropoutArgs<T> a{x.ptr<const T>(), y.ptr<T>(), n, source, mask_in.ptr<const uint8_t>(),
                   mask_out.ptr<uint8_t>(), seed, offset, threshold, T(scale), cpu::num_threads()};
  if (a.n == 0) return;
  const cpu::KernelTable& k = cpu::kernels();
  if (a.x && source == MaskSource::keep_all && scale == 1) {  // identity: y = x, bitwise
    if (a.x != a.y) k.stream.copy(a.x, a.y, int64_t(sizeof(T)) * a.n, a.threads);
    a.x = nullptr;  // only the mask is left to write
  }
  if (!a.x && !a.mask_out) return;
  k.dropout.get<T>()(a);
}

py::tuple dropout(py::handle x_obj, double p, py::handle seed_obj, py::handle offset_obj, py::handle training_obj,
                  py::handle y_obj, py::handle mask_obj) {
  const uint64_t seed = u64_arg(seed_obj, "seed"), offset = u64_arg(offset_obj, "offset");
  const bool training = flag_arg(training_obj, "training");
  const Array x = view(x_obj, "x");
  Array y = output_view(y_obj, "out (y)"), mask = output_view(mask_obj, "out (mask)");
  ops::check_dropout(x, p, y, mask);
  require_host("dropout", {&x});
  py::object y_res = result(y_obj, y), mask_res = result(mask_obj, mask);
  uint32_t threshold = 0;
  const MaskSource source = training ? dropout_mask_source(p, &threshold) : MaskSource::keep_all;
  const double scale = training ? dropout_keep_scale(p) : 1.0;
  without_gil([&] {
    ops::dispatch_float(x.dtype, [&](auto t) {
      run<decltype(t)>(x, y, kNone, mask, x.size(), source, seed, offset, threshold, scale);
    });
  });
  return py::make_tuple(y_res, mask_res);
}

// mask None: regenerate it from (seed, offset), storing nothing.
py::object dropout_backward(py::handle dy_obj, py::handle mask_obj, double p, py::handle seed_obj,
                            py::handle offset_obj, py::handle dx_obj) {
  const uint64_t seed = u64_arg(seed_obj, "seed"), offset = u64_arg(offset_obj, "offset");
  const Array dy = view(dy_obj, "dy"), mask = view(mask_obj, "mask", true);
  Array dx = output_view(dx_obj, "out (dx)");
  ops::check_dropout_backward(dy, mask, p, dx);
  require_host("dropout_backward", {&dy, &mask});
  py::object dx_res = result(dx_obj, dx);
  uint32_t threshold = 0;
  const MaskSource source = mask.given ? MaskSource::load : dropout_mask_source(p, &threshold);
  without_gil([&] {
    ops::dispatch_float(dy.dtype, [&](auto t) {
      run<decltype(t)>(dy, dx, mask, kNone, dy.size(), source, seed, offset, threshold, dropout_keep_scale(p));
    });
  });
  return dx_res;
}

py::object dropout_mask(py::handle n_obj, double p, py::handle seed_obj, py::handle offset_obj, py::handle mask_obj) {
  const int64_t n = int_arg(n_obj, "n", ops::kCountRule);
  const uint64_t seed = u64_arg(seed_obj, "seed"), offset = u64_arg(offset_obj, "offset");
  Array mask = output_view(mask_obj, "out");
  ops::check_dropout_mask(n, p, mask);
  require_host("dropout_mask", {&mask});
  py::object mask_res = result(mask_obj, mask);
  uint32_t threshold = 0;
  const MaskSource source = dropout_mask_source(p, &threshold);
  without_gil([&] { run<float>(kNone, kNone, kNone, mask, n, source, seed, offset, threshold, 1.0); });
  return mask_res;
}

// Words of Philox blocks first, ..., first + blocks - 1 as (blocks, 4) uint32, from
// the kernel of the SIMD level in use (for the tests' known answers).
py::array philox4x32_10_blocks(py::handle seed, py::handle offset, py::handle first, py::handle blocks_obj) {
  const int64_t blocks = int_arg(blocks_obj, "blocks", ">= 0", 0);
  const uint64_t s = u64_arg(seed, "seed"), o = u64_arg(offset, "offset"), f = u64_arg(first, "first");
  py::array_t<uint32_t> out({py::ssize_t(blocks), py::ssize_t(4)});
  uint32_t* words = out.mutable_data();
  without_gil([&] { cpu::kernels().dropout.philox(s, o, f, blocks, words); });
  return std::move(out);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("training"),
        py::arg("y"), py::arg("mask"));
  m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"), py::arg("seed"),
        py::arg("offset"), py::arg("dx"));
  m.def("dropout_mask", &dropout_mask, py::arg("n"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::arg("mask"));
  m.def("philox4x32_10_blocks", &philox4x32_10_blocks, py::arg("seed"), py::arg("offset"), py::arg("first"),
        py::arg("blocks"));
  m.def("philox4x32_10",
        [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
          uint32_t c[4] = {c0, c1, c2, c3};
          fastnn::philox4x32_10(c, k0, k1);
          return py::make_tuple(c[0], c[1], c[2], c[3]);
        },
        py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"),
        "Philox4x32-10 of one counter, scalar (the math header as CUDA runs it).");
}

}  // namespace bind
}  // namespace fastnn

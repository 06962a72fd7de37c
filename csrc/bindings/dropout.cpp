// Bindings for dropout: argument checks, the mask source for p's edge cases, then the
// kernel with the GIL released. seed and offset arrive checked by functional.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"
#include "fastnn/philox.h"

#include <vector>

namespace py = pybind11;

namespace fastnn {
namespace bind {
namespace {

using fastnn::cpu::DropoutArgs;
using fastnn::cpu::MaskSource;

py::ssize_t mask_bytes(py::ssize_t n) { return (n + 7) / 8; }

// A 1-D uint8 mask of (n + 7) // 8 bytes.
void require_mask(const Arg& m, py::ssize_t n) {
  if (!m.array.dtype().equal(py::dtype::of<uint8_t>()))
    throw py::type_error(m.name + " must have dtype uint8 (the bit-packed mask), got " +
                         std::string(py::str(m.array.dtype())));
  require_layout(m);
  if (shape_of(m.array) != std::vector<py::ssize_t>{mask_bytes(n)})
    throw py::value_error(m.name + " must have shape " + shape_str({mask_bytes(n)}) +
                          " ((n + 7) // 8 bytes for n = " + std::to_string(n) + " elements), got " +
                          shape_str(shape_of(m.array)));
}

Arg mask_output(py::handle obj, const std::string& name, py::ssize_t n) {
  Arg m = ndarray_arg(obj, name, /*optional=*/true);
  if (!m.given()) return {new_array(py::dtype::of<uint8_t>(), {mask_bytes(n)}), name};
  require_mask(m, n);
  require_writeable(m);
  return m;
}

// Where the keep bits come from when they are generated: p = 0 keeps everything and
// p close enough to 1 (threshold 2**32) nothing, without running the generator.
MaskSource generated_source(double p, uint32_t& threshold) {
  const uint64_t t = fastnn::dropout_threshold(p);
  threshold = uint32_t(t);
  return t == 0 ? MaskSource::keep_all : t > 0xFFFFFFFFu ? MaskSource::drop_all : MaskSource::generate;
}

double keep_scale(double p) { return p < 1 ? 1.0 / (1.0 - p) : 0.0; }

template <class T>
void run(const Arg& x, const Arg& y, const Arg& mask_in, const Arg& mask_out, MaskSource source,
         uint64_t seed, uint64_t offset, uint32_t threshold, double scale) {
  DropoutArgs<T> a{x.cdata<T>(), y.data<T>(), x.array.size(), source,
                   mask_in.cdata<uint8_t>(), mask_out.data<uint8_t>(), seed, offset, threshold,
                   T(scale), fastnn::cpu::num_threads()};
  if (a.n == 0) return;
  py::gil_scoped_release release;
  if (a.x && source == MaskSource::keep_all && scale == 1) {  // identity: y = x, bitwise
    if (a.x != a.y) fastnn::cpu::kernels().stream.copy(a.x, a.y, sizeof(T) * a.n, a.threads);
    a.x = nullptr;  // only the mask is left to write
  }
  if (!a.x && !a.mask_out) return;
  const auto& k = fastnn::cpu::kernels().dropout;
  if constexpr (sizeof(T) == 4) k.f32(a); else k.f64(a);
}

void run_any(Float ft, const Arg& x, const Arg& y, const Arg& mask_in, const Arg& mask_out,
             MaskSource source, uint64_t seed, uint64_t offset, uint32_t threshold, double scale) {
  if (ft == Float::f32)
    run<float>(x, y, mask_in, mask_out, source, seed, offset, threshold, scale);
  else
    run<double>(x, y, mask_in, mask_out, source, seed, offset, threshold, scale);
}

py::tuple dropout(py::handle x_obj, double p, uint64_t seed, uint64_t offset, bool training,
                  py::handle y_obj, py::handle mask_obj) {
  const Arg x = ndarray_arg(x_obj, "x");
  const Float ft = float_type(x);
  require_layout(x);
  require_unit_interval(p, "p");
  const Arg y = output_arg(y_obj, "out (y)", x, shape_of(x.array));
  const Arg mask = mask_output(mask_obj, "out (mask)", x.array.size());
  require_no_overlap({&y, &mask}, {&x, &y, &mask}, {{"out (y)", "x"}});
  uint32_t threshold = 0;
  const MaskSource source = training ? generated_source(p, threshold) : MaskSource::keep_all;
  const Arg none{py::array(), "", false};
  run_any(ft, x, y, none, mask, source, seed, offset, threshold, training ? keep_scale(p) : 1.0);
  return py::make_tuple(y.array, mask.array);
}

// mask None: regenerate it from (seed, offset), storing nothing.
py::array dropout_backward(py::handle dy_obj, py::handle mask_obj, double p, uint64_t seed,
                           uint64_t offset, py::handle dx_obj) {
  const Arg dy = ndarray_arg(dy_obj, "dy");
  const Float ft = float_type(dy);
  require_layout(dy);
  const Arg mask = ndarray_arg(mask_obj, "mask", /*optional=*/true);
  if (mask.given()) require_mask(mask, dy.array.size());
  require_unit_interval(p, "p");
  const Arg dx = output_arg(dx_obj, "out (dx)", dy, shape_of(dy.array));
  require_no_overlap({&dx}, {&dy, &mask, &dx}, {{"out (dx)", "dy"}});
  uint32_t threshold = 0;
  const MaskSource source = mask.given() ? MaskSource::load : generated_source(p, threshold);
  const Arg none{py::array(), "", false};
  run_any(ft, dy, dx, mask, none, source, seed, offset, threshold, keep_scale(p));
  return dx.array;
}

py::array dropout_mask(int64_t n, double p, uint64_t seed, uint64_t offset, py::handle mask_obj) {
  if (n < 0) throw py::value_error("n must be >= 0, got " + std::to_string(n));
  require_unit_interval(p, "p");
  const Arg mask = mask_output(mask_obj, "out", n);
  uint32_t threshold = 0;
  const MaskSource source = generated_source(p, threshold);
  DropoutArgs<float> a{nullptr, nullptr, n, source, nullptr, mask.data<uint8_t>(),
                       seed, offset, threshold, 1.0f, fastnn::cpu::num_threads()};
  py::gil_scoped_release release;
  fastnn::cpu::kernels().dropout.f32(a);
  return mask.array;
}

// Words of Philox blocks first, ..., first + blocks - 1 as (blocks, 4) uint32, from
// the kernel of the SIMD level in use (for the tests' known answers).
py::array philox4x32_10_blocks(uint64_t seed, uint64_t offset, uint64_t first, int64_t blocks) {
  if (blocks < 0) throw py::value_error("blocks must be >= 0");
  py::array_t<uint32_t> out({py::ssize_t(blocks), py::ssize_t(4)});
  uint32_t* p = out.mutable_data();
  py::gil_scoped_release release;
  fastnn::cpu::kernels().dropout.philox(seed, offset, first, blocks, p);
  return std::move(out);
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::arg("training"), py::arg("y"), py::arg("mask"));
  m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"),
        py::arg("seed"), py::arg("offset"), py::arg("dx"));
  m.def("dropout_mask", &dropout_mask, py::arg("n"), py::arg("p"), py::arg("seed"),
        py::arg("offset"), py::arg("mask"));
  m.def("philox4x32_10_blocks", &philox4x32_10_blocks, py::arg("seed"), py::arg("offset"),
        py::arg("first"), py::arg("blocks"));
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

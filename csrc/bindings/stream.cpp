// The memory-floor loops the benchmarks compare against, in the _cpu module.
#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "ops/stream.h"

#include <vector>

namespace fastnn {
namespace bind {
namespace {

void stream_copy(py::handle src_obj, py::handle dst_obj) {
  const Array src = view(src_obj, "src"), dst = view(dst_obj, "dst");
  ops::check_stream_copy(src, dst);
  require_host("stream_copy", {&src});
  without_gil([&] {
    cpu::kernels().stream.copy(src.data, dst.data, src.nbytes(), cpu::num_threads());
  });
}

int64_t stream_read(py::handle src_obj) {
  const Array src = view(src_obj, "src");
  ops::check_stream_read(src);
  require_host("stream_read", {&src});
  return without_gil([&] {
    return int64_t(cpu::kernels().stream.read(src.ptr<const float>(), src.size(), cpu::num_threads()));
  });
}

template <class T>
std::vector<T*> pointers(const std::vector<Array>& arrays) {
  std::vector<T*> p;
  for (const Array& a : arrays) p.push_back(a.ptr<T>());
  return p;
}

void stream_pass(py::handle reads_obj, py::handle writes_obj, py::handle inplace_obj) {
  const std::vector<Array> reads = view_list(reads_obj, "reads"), writes = view_list(writes_obj, "writes"),
                           inplace = view_list(inplace_obj, "inplace");
  const int64_t n = ops::check_stream_pass(reads, writes, inplace);
  for (const auto* list : {&reads, &writes, &inplace})
    if (!list->empty()) require_host("stream_pass", {&list->front()});
  const std::vector<const float*> r = pointers<const float>(reads);
  const std::vector<float*> w = pointers<float>(writes), k = pointers<float>(inplace);
  without_gil([&] {
    cpu::kernels().stream.pass(r.data(), int64_t(r.size()), w.data(), int64_t(w.size()), k.data(),
                               int64_t(k.size()), n, cpu::num_threads());
  });
}

}  // namespace

void bind_stream(py::module_& m) {
  m.def("stream_copy", &stream_copy, py::arg("src"), py::arg("dst"),
        "Memory floor: dst[:] = src, parallel streaming copy.");
  m.def("stream_read", &stream_read, py::arg("src"),
        "Memory floor: read a float32 array once (returns the XOR of its 32-bit words).");
  m.def("stream_pass", &stream_pass, py::arg("reads"), py::arg("writes") = py::list(),
        py::arg("inplace") = py::list(),
        "Memory floor of any one-pass pattern over float32 arrays of one size: s = sum of "
        "reads; each inplace array += s (read and written); each writes array = s (written "
        "out of place).");
}

}  // namespace bind
}  // namespace fastnn

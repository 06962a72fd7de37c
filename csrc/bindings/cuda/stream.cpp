// The memory floor in the _cuda module, for the benchmarks: a device copy
// (cudaMemcpyAsync) and one pass with a given pattern of float32 reads and writes.
#include "bindings/cuda/launch.h"
#include "cuda/kernels.h"
#include "ops/stream.h"

#include <vector>

namespace fastnn {
namespace bind {
namespace {

void stream_copy(py::handle src_obj, py::handle dst_obj) {
  const Array src = view(src_obj, "src"), dst = view(dst_obj, "dst");
  ops::check_stream_copy(src, dst);
  const cudaStream_t stream = gpu::launch_for("stream_copy", {&src, &dst});
  if (src.nbytes() > 0)
    cuda::check(cudaMemcpyAsync(dst.data, src.data, size_t(src.nbytes()), cudaMemcpyDeviceToDevice, stream),
                "stream_copy");
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
  std::vector<const Array*> all;
  for (const auto* list : {&reads, &writes, &inplace})
    for (const Array& a : *list) all.push_back(&a);
  const cudaStream_t stream = gpu::launch_for("stream_pass", all);
  const std::vector<const float*> r = pointers<const float>(reads);
  const std::vector<float*> w = pointers<float>(writes), k = pointers<float>(inplace);
  cuda::stream_pass(r.data(), int64_t(r.size()), w.data(), int64_t(w.size()), k.data(), int64_t(k.size()), n, stream);
}

}  // namespace

void bind_cuda_stream(py::module_& m) {
  m.def("stream_copy", &stream_copy, py::arg("src"), py::arg("dst"), "Memory floor: dst[:] = src (cudaMemcpyAsync).");
  m.def("stream_pass", &stream_pass, py::arg("reads"), py::arg("writes") = py::list(),
        py::arg("inplace") = py::list(),
        "Memory floor of a one-pass pattern over float32 GPU arrays of one size (at most 8 of each kind): "
        "s = sum of reads; each inplace array += s; each writes array = s.");
}

}  // namespace bind
}  // namespace fastnn

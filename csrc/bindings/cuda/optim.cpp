// The multi-tensor optimizer step in the _cuda module: the typed protocol of ops/optim.h
// (named hyper-parameters, state slots and per-parameter scalars), the same checks as on
// the CPU, then the launches on the call's stream. The non-finite check is a device byte
// the call returns: nothing waits for the GPU unless the caller reads it.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings/cuda/launch.h"
#include "cuda/kernels.h"
#include "ops/check.h"
#include "ops/optim.h"

#include <string>
#include <vector>

namespace fastnn {
namespace bind {
namespace {

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

py::dict dict_arg(py::handle obj, const char* name) {
  if (!py::isinstance<py::dict>(obj)) throw ops::TypeError(std::string(name) + " must be a dict, got " + type_name(obj));
  return py::reinterpret_borrow<py::dict>(obj);
}

// The hyper-parameter dict as entries, each a flag (a bool) or a number (keys holds the names).
std::vector<ops::HyperEntry> hyper_entries(const py::dict& hyper, std::vector<std::string>& keys) {
  for (auto item : hyper) {
    if (!py::isinstance<py::str>(item.first)) throw ops::TypeError("hyper-parameter names must be str");
    keys.push_back(py::str(item.first));
  }
  std::vector<ops::HyperEntry> entries;
  size_t i = 0;
  for (auto item : hyper) {
    ops::HyperEntry e{keys[i++].c_str(), false, 0.0, false};
    const py::handle v = item.second;
    if (is_bool(v)) {
      e.is_flag = true;
      e.flag = flag_arg(v, e.key);
    } else if (PyFloat_Check(v.ptr()) || PyIndex_Check(v.ptr()) ||
               (PyNumber_Check(v.ptr()) && !py::isinstance<py::array>(v))) {  // as the CPU module
      e.number = PyFloat_AsDouble(v.ptr());
      if (e.number == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    } else {
      throw ops::TypeError("hyper-parameter '" + std::string(e.key) + "' must be a number or a bool, got " +
                           type_name(v));
    }
    entries.push_back(e);
  }
  return entries;
}

template <class T>
std::vector<T*> pointers(const std::vector<Array>& arrays) {
  std::vector<T*> p;
  for (const Array& a : arrays) p.push_back(a.ptr<T>());
  return p;
}

std::vector<const Array*> addresses(const std::vector<Array>& arrays) {
  std::vector<const Array*> out;
  for (const Array& a : arrays) out.push_back(&a);
  return out;
}

// A device scalar array: float64, (n,), C-contiguous, on the GPU.
void check_device_scalars(const Array& a, size_t n) {
  if (a.device != ops::Device::cuda)
    throw ops::TypeError(a.name + " must be a list of floats or a float64 GPU array");
  if (a.dtype != ops::DType::float64) throw ops::TypeError(a.name + " must have dtype float64, got " + a.dtype_name);
  ops::require_layout(a);
  if (a.shape != ops::Shape{int64_t(n)})
    throw ops::ValueError(a.name + " must have shape " + ops::shape_str({int64_t(n)}) + ", got " +
                          ops::shape_str(a.shape));
}

// A new 0-d uint8 device flag, set to 1 on the stream.
py::object new_flag(Array& flag, cudaStream_t stream) {
  flag = ops::absent("finite");
  ops::expect_output(flag, ops::DType::uint8, {});
  py::object obj = gpu::result(py::none(), flag);
  cuda::check(cudaMemsetAsync(flag.data, 1, 1, stream), "optim_step");
  return obj;
}

// Returns None without check_finite and finite; else the device flag (a 0-d uint8 CuPy
// array): 1 if the step was applied, 0 if a gradient held inf or NaN (nothing written).
// finite: a flag from optim_all_finite, read by the update (all-or-nothing over calls).
py::object optim_step(const std::string& rule_name, py::handle params_obj, py::handle grads_obj,
                      py::handle state_arg, py::handle scalars_arg, std::vector<bool> has_state_in,
                      py::handle hyper_arg, py::handle check_finite_obj, py::handle finite_obj) {
  const int rule = ops::optim_rule(rule_name.c_str());
  std::vector<std::string> keys;
  const OptimHyper hyper = ops::optim_hyper(rule, hyper_entries(dict_arg(hyper_arg, "hyper"), keys));
  const py::dict state_obj = dict_arg(state_arg, "state"), scalars_obj = dict_arg(scalars_arg, "scalars");
  const bool check_finite = flag_arg(check_finite_obj, "check_finite");
  const std::vector<Array> params = view_list(params_obj, "params"), grads = view_list(grads_obj, "grads");
  const size_t n = params.size();
  std::vector<Array> state[kOptimSlots];
  for (auto item : state_obj) {
    const std::string name = py::str(item.first);
    state[ops::optim_state_slot(rule, name.c_str())] = view_list(item.second, name);
  }
  std::vector<double> scalars[kOptimScalars];
  Array device_scalars[kOptimScalars];
  for (auto item : scalars_obj) {
    const std::string name = py::str(item.first);
    const int k = ops::optim_scalar_slot(rule, name.c_str());
    if (py::isinstance<py::list>(item.second) || py::isinstance<py::tuple>(item.second)) {
      scalars[k] = py::cast<std::vector<double>>(item.second);
    } else {
      device_scalars[k] = view(item.second, "scalars['" + name + "']");
      check_device_scalars(device_scalars[k], n);
      scalars[k].assign(n, 0.0);  // the count check below; the values are read on the device
    }
  }
  Array finite = view(finite_obj, "finite", true);
  if (finite.given) {
    if (finite.dtype != ops::DType::uint8 || !finite.shape.empty())
      throw ops::TypeError("finite must be a 0-d uint8 GPU array (from optim_all_finite), got " + finite.dtype_name +
                           " of shape " + ops::shape_str(finite.shape));
    if (check_finite) throw ops::ValueError("pass check_finite=True or a finite flag, not both");
  }
  ops::check_optim_step(hyper, params, grads, state, scalars);
  std::vector<const Array*> all = addresses(params);
  for (const Array* a : {&device_scalars[0], &device_scalars[1], &finite}) all.push_back(a);
  ops::require_one_device(all);
  if (n == 0) return py::none();
  const cudaStream_t stream = gpu::launch_for("optim_step", addresses(params));

  std::vector<unsigned char> has_state(n, 0);  // SGD: the momentum buffer holds a value
  for (size_t i = 0; i < n && i < has_state_in.size(); ++i) has_state[i] = optim_slot_used(hyper, 0) && has_state_in[i];
  std::vector<int64_t> sizes;
  for (const Array& p : params) sizes.push_back(p.size());
  Array flag = finite;
  py::object flag_obj = finite.given ? py::reinterpret_borrow<py::object>(finite_obj) : py::none();
  if (check_finite) flag_obj = new_flag(flag, stream);
  ops::dispatch_float(params[0].dtype, [&](auto t) {
    using T = decltype(t);
    std::vector<T*> p = pointers<T>(params), s[kOptimSlots];
    std::vector<const T*> g = pointers<const T>(grads);
    for (int k = 0; k < kOptimSlots; ++k) s[k] = pointers<T>(state[k]);
    cuda::OptimLaunch<T> a{};
    a.args = OptimArgs<T>{int64_t(n), sizes.data(), p.data(), g.data(), {}, {}, nullptr, hyper, false, 0};
    for (int k = 0; k < kOptimSlots; ++k) a.args.state[k] = state[k].empty() ? nullptr : s[k].data();
    for (int k = 0; k < kOptimScalars; ++k) {
      a.coef_device[k] = device_scalars[k].given ? device_scalars[k].ptr<const double>() : nullptr;
      a.coef_host[k] = device_scalars[k].given || scalars[k].empty() ? nullptr : scalars[k].data();
    }
    a.has_state = has_state.data();
    a.finite = flag.given ? flag.ptr<unsigned char>() : nullptr;
    a.scan = check_finite;
    cuda::optim_step<T>(a, stream);
  });
  return flag_obj;
}

// A 0-d uint8 CuPy array: 1 when no element of the arrays (one dtype) is inf or NaN.
py::object optim_all_finite(py::handle arrays_obj) {
  const std::vector<Array> arrays = view_list(arrays_obj, "arrays");
  ops::check_array_list(arrays);
  if (arrays.empty()) throw ops::ValueError("arrays must not be empty (the result's device comes from them)");
  const cudaStream_t stream = gpu::launch_for("optim_all_finite", addresses(arrays));
  Array flag;
  py::object flag_obj = new_flag(flag, stream);
  std::vector<int64_t> sizes;
  for (const Array& a : arrays) sizes.push_back(a.size());
  ops::dispatch_float(arrays[0].dtype, [&](auto t) {
    using T = decltype(t);
    const std::vector<const T*> p = pointers<const T>(arrays);
    cuda::all_finite<T>(p.data(), sizes.data(), int64_t(p.size()), flag.ptr<unsigned char>(), stream);
  });
  return flag_obj;
}

}  // namespace

void bind_cuda_optim(py::module_& m) {
  m.def("optim_step", &optim_step, py::arg("rule"), py::arg("params"), py::arg("grads"), py::arg("state"),
        py::arg("scalars"), py::arg("has_state"), py::arg("hyper"), py::arg("check_finite"),
        py::arg("finite") = py::none(),
        "One optimizer step over a group of GPU parameters, in place: the CPU module's protocol. A "
        "scalars entry may also be a float64 GPU array (one value per parameter), read when the kernel "
        "runs, so a captured CUDA graph replays with the values the caller last wrote there. Returns "
        "None, or with check_finite (or a finite flag from optim_all_finite) a 0-d uint8 GPU array: 1 "
        "if the step was applied, 0 if a gradient held inf or NaN and nothing was written.");
  m.def("optim_all_finite", &optim_all_finite, py::arg("arrays"),
        "A 0-d uint8 GPU array: 1 when no element of the arrays is inf or NaN (no host sync).");
}

}  // namespace bind
}  // namespace fastnn

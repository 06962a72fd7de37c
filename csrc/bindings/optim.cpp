// The multi-tensor optimizer steps in the _cpu module (fastnn.optim calls them once per
// parameter group): the typed protocol of ops/optim.h read from Python (named
// hyper-parameters, state slots and per-parameter scalars), the checks, then one kernel
// call with the GIL released.
#include <pybind11/stl.h>

#include "bindings/common.h"
#include "cpu/dispatch.h"
#include "ops/optim.h"

#include <string>
#include <vector>

namespace fastnn {
namespace bind {
namespace {

py::dict dict_arg(py::handle obj, const char* name) {
  if (!py::isinstance<py::dict>(obj))
    throw ops::TypeError(std::string(name) + " must be a dict, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  return py::reinterpret_borrow<py::dict>(obj);
}

// The hyper-parameter dict as entries, each a flag (a bool) or a number. keys holds the
// names the entries point to.
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
    } else if (PyFloat_Check(v.ptr()) || PyIndex_Check(v.ptr()) || (PyNumber_Check(v.ptr()) && !py::isinstance<py::array>(v))) {
      e.number = PyFloat_AsDouble(v.ptr());
      if (e.number == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    } else {
      throw ops::TypeError("hyper-parameter '" + std::string(e.key) + "' must be a number or a bool, got " +
                           std::string(py::str(py::type::handle_of(v).attr("__name__"))));
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

bool optim_step(const std::string& rule_name, py::handle params_obj, py::handle grads_obj, py::handle state_arg,
                py::handle scalars_arg, std::vector<bool> has_state_in, py::handle hyper_arg,
                py::handle check_finite_obj) {
  const int rule = ops::optim_rule(rule_name.c_str());
  std::vector<std::string> keys;
  const OptimHyper hyper = ops::optim_hyper(rule, hyper_entries(dict_arg(hyper_arg, "hyper"), keys));
  const py::dict state_obj = dict_arg(state_arg, "state"), scalars_obj = dict_arg(scalars_arg, "scalars");
  const bool check_finite = flag_arg(check_finite_obj, "check_finite");
  const std::vector<Array> params = view_list(params_obj, "params"), grads = view_list(grads_obj, "grads");
  std::vector<Array> state[kOptimSlots];
  for (auto item : state_obj) {
    const std::string name = py::str(item.first);
    state[ops::optim_state_slot(rule, name.c_str())] = view_list(item.second, name);
  }
  std::vector<double> scalars[kOptimScalars];
  for (auto item : scalars_obj) {
    const std::string name = py::str(item.first);
    scalars[ops::optim_scalar_slot(rule, name.c_str())] = py::cast<std::vector<double>>(item.second);
  }
  ops::check_optim_step(hyper, params, grads, state, scalars);
  const size_t n = params.size();
  if (n > 0) require_host("optim_step", {&params[0]});
  if (n == 0) return true;

  std::vector<unsigned char> has_state(n, 0);  // SGD: the momentum buffer holds a value
  for (size_t i = 0; i < n && i < has_state_in.size(); ++i) has_state[i] = optim_slot_used(hyper, 0) && has_state_in[i];
  std::vector<int64_t> sizes;
  for (const Array& p : params) sizes.push_back(p.size());
  for (auto& list : scalars) list.resize(n, 0.0);
  return ops::dispatch_float(params[0].dtype, [&](auto t) {
    using T = decltype(t);
    std::vector<T*> p = pointers<T>(params), s[kOptimSlots];
    std::vector<const T*> g = pointers<const T>(grads);
    for (int k = 0; k < kOptimSlots; ++k) s[k] = pointers<T>(state[k]);
    OptimArgs<T> a{int64_t(n), sizes.data(), p.data(), g.data(), {}, {}, has_state.data(), hyper,
                   check_finite, cpu::num_threads()};
    for (int k = 0; k < kOptimSlots; ++k) a.state[k] = state[k].empty() ? nullptr : s[k].data();
    for (int k = 0; k < kOptimScalars; ++k) a.coef[k] = scalars[k].data();
    return without_gil([&] { return cpu::kernels().optim.get<T>().step(a); });
  });
}

bool optim_all_finite(py::handle arrays_obj) {
  const std::vector<Array> arrays = view_list(arrays_obj, "arrays");
  ops::check_array_list(arrays);
  if (arrays.empty()) return true;
  require_host("optim_all_finite", {&arrays[0]});
  std::vector<int64_t> sizes;
  for (const Array& a : arrays) sizes.push_back(a.size());
  return ops::dispatch_float(arrays[0].dtype, [&](auto t) {
    using T = decltype(t);
    const std::vector<const T*> p = pointers<const T>(arrays);
    return without_gil([&] {
      return cpu::kernels().optim.get<T>().all_finite(p.data(), sizes.data(), int64_t(p.size()), cpu::num_threads());
    });
  });
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("optim_step", &optim_step, py::arg("rule"), py::arg("params"), py::arg("grads"), py::arg("state"),
        py::arg("scalars"), py::arg("has_state"), py::arg("hyper"), py::arg("check_finite"),
        "One optimizer step over a group of parameters, in place (see fastnn.optim). state: "
        "{slot name: [array per parameter]} for the slots the rule uses (torch's names); scalars: "
        "{name: [float per parameter]}; hyper: {name: number or bool}, every key the rule takes. "
        "With check_finite, returns False and writes nothing if a gradient holds inf or NaN.");
  m.def("optim_all_finite", &optim_all_finite, py::arg("arrays"),
        "True when no element of the arrays (one dtype) is inf or NaN.");
}

}  // namespace bind
}  // namespace fastnn

// Bindings for the multi-tensor optimizer steps (fastnn.optim calls these once per
// parameter group): argument checks, then one kernel call with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/module.h"
#include "cpu/dispatch.h"
#include "fastnn/optim_math.h"

#include <algorithm>
#include <string>
#include <vector>

namespace py = pybind11;

namespace fastnn {
namespace bind {
namespace {

std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// A list of arrays shaped and typed like params (params itself when like is null).
std::vector<Arg> array_list(py::handle obj, const char* name, const std::vector<Arg>* like,
                            bool written) {
  if (!py::isinstance<py::list>(obj)) throw py::type_error(std::string(name) + " must be a list of arrays");
  const py::list list = py::reinterpret_borrow<py::list>(obj);
  if (like && list.size() != like->size())
    throw py::value_error(std::string(name) + " has " + std::to_string(list.size()) +
                          " arrays but params has " + std::to_string(like->size()));
  std::vector<Arg> out;
  for (size_t i = 0; i < list.size(); ++i) {
    Arg a = ndarray_arg(list[i], item(name, i));
    if (like) {
      require_like(a, (*like)[i], shape_of((*like)[i].array));
    } else {
      float_type(a);
      require_layout(a);
      if (i > 0 && !a.array.dtype().equal(out[0].array.dtype()))
        throw py::type_error(a.name + " has dtype " + std::string(py::str(a.array.dtype())) + " but " +
                             out[0].name + " has " + std::string(py::str(out[0].array.dtype())) +
                             "; one call takes one dtype");
    }
    if (written) require_writeable(a);
    out.push_back(a);
  }
  return out;
}

// No written array may overlap any other array (gradients may overlap each other).
void require_disjoint(const std::vector<std::pair<const Arg*, bool>>& arrays) {
  std::vector<std::pair<const Arg*, bool>> v;
  for (const auto& a : arrays)
    if (a.first->array.nbytes() > 0) v.push_back(a);
  std::sort(v.begin(), v.end(), [](const auto& x, const auto& y) { return x.first->lo() < y.first->lo(); });
  const Arg* reach = nullptr;          // the array reaching furthest so far
  const Arg* reach_written = nullptr;  // the written array reaching furthest so far
  for (const auto& [a, written] : v) {
    const Arg* hit = nullptr;
    if (reach_written && a->lo() < reach_written->hi()) hit = reach_written;
    else if (written && reach && a->lo() < reach->hi()) hit = reach;
    if (hit)
      throw py::value_error(a->name + " overlaps " + hit->name +
                            " in memory; an optimizer step writes parameters and state in place");
    if (!reach || a->hi() > reach->hi()) reach = a;
    if (written && (!reach_written || a->hi() > reach_written->hi())) reach_written = a;
  }
}

template <class T>
const fastnn::cpu::OptimKernels<T>& optim_kernels();
template <>
const fastnn::cpu::OptimKernels<float>& optim_kernels<float>() { return fastnn::cpu::kernels().optim_f32; }
template <>
const fastnn::cpu::OptimKernels<double>& optim_kernels<double>() { return fastnn::cpu::kernels().optim_f64; }

template <class T>
std::vector<T*> pointers(const std::vector<Arg>& arrays) {
  std::vector<T*> p;
  for (const Arg& a : arrays) p.push_back(a.data<T>());
  return p;
}

int rule_of(const std::string& name) {
  if (name == "sgd") return kOptimSgd;
  if (name == "adagrad") return kOptimAdagrad;
  if (name == "rmsprop") return kOptimRmsprop;
  if (name == "adam") return kOptimAdam;
  throw py::value_error("rule must be 'sgd', 'adagrad', 'rmsprop' or 'adam', got '" + name + "'");
}

template <class T>
bool run_step(const std::vector<Arg>& params, const std::vector<Arg>& grads,
              const std::vector<std::vector<Arg>>& states, const std::vector<double>& coef0,
              const std::vector<double>& coef1, const std::vector<unsigned char>& has_state,
              const OptimHyper& hyper, bool check_finite) {
  const int64_t n = int64_t(params.size());
  std::vector<int64_t> sizes;
  for (const Arg& p : params) sizes.push_back(p.array.size());
  std::vector<T*> p = pointers<T>(params), s[3];
  std::vector<const T*> g;
  for (const Arg& a : grads) g.push_back(a.cdata<T>());
  for (int k = 0; k < 3; ++k) s[k] = pointers<T>(states[k]);
  fastnn::cpu::OptimArgs<T> a{n, sizes.data(), p.data(), g.data(),
                              {states[0].empty() ? nullptr : s[0].data(),
                               states[1].empty() ? nullptr : s[1].data(),
                               states[2].empty() ? nullptr : s[2].data()},
                              {coef0.data(), coef1.data()}, has_state.data(), hyper,
                              check_finite, fastnn::cpu::num_threads()};
  py::gil_scoped_release release;
  return optim_kernels<T>().step(a);
}

bool optim_step(const std::string& rule_name, py::handle params_obj, py::handle grads_obj,
                py::list states_obj, std::vector<double> coef0, std::vector<double> coef1,
                std::vector<bool> has_state_in, py::dict h, bool check_finite) {
  OptimHyper hyper{};
  hyper.rule = rule_of(rule_name);
  auto num = [&](const char* key) { return h.contains(key) ? h[key].cast<double>() : 0.0; };
  auto flag = [&](const char* key) { return h.contains(key) && h[key].cast<bool>(); };
  hyper.lr = num("lr");
  hyper.weight_decay = num("weight_decay");
  hyper.momentum = num("momentum");
  hyper.dampening = num("dampening");
  hyper.beta1 = num("beta1");
  hyper.beta2 = num("beta2");
  hyper.eps = num("eps");
  hyper.grad_scale = h.contains("grad_scale") ? num("grad_scale") : 1.0;
  hyper.maximize = flag("maximize");
  hyper.nesterov = flag("nesterov");
  hyper.decoupled = flag("decoupled");
  hyper.amsgrad = flag("amsgrad");
  hyper.centered = flag("centered");
  if (!(hyper.lr >= 0)) throw py::value_error("lr must be >= 0, got " + std::to_string(hyper.lr));
  if (!(hyper.eps >= 0)) throw py::value_error("eps must be >= 0, got " + std::to_string(hyper.eps));
  require_positive(hyper.grad_scale, "grad_scale");

  const std::vector<Arg> params = array_list(params_obj, "params", nullptr, true);
  const std::vector<Arg> grads = array_list(grads_obj, "grads", &params, false);
  const size_t n = params.size();
  // Which state lists the rule reads and writes: [0], [1], [2] as in optim_math.h.
  bool uses[3] = {false, false, false};
  const bool momentum = hyper.rule == kOptimSgd ? hyper.momentum != 0 : hyper.momentum > 0;
  switch (hyper.rule) {
    case kOptimSgd: uses[0] = momentum; break;
    case kOptimAdagrad: uses[0] = true; break;
    case kOptimRmsprop: uses[0] = true; uses[1] = hyper.centered; uses[2] = momentum; break;
    case kOptimAdam: uses[0] = uses[1] = true; uses[2] = hyper.amsgrad; break;
  }
  if (states_obj.size() != 3) throw py::value_error("states must be a list of 3 lists (empty when unused)");
  std::vector<std::vector<Arg>> states(3);
  for (int k = 0; k < 3; ++k) {
    const std::string name = item("states", k);
    if (uses[k]) states[k] = array_list(states_obj[k], name.c_str(), &params, true);
    else if (py::len(states_obj[k]) != 0)
      throw py::value_error(name + " must be empty: rule '" + rule_name + "' with these settings does not use it");
  }
  const bool per_tensor_coefs = hyper.rule == kOptimAdagrad || hyper.rule == kOptimAdam;
  if (per_tensor_coefs && (coef0.size() != n || (hyper.rule == kOptimAdam && coef1.size() != n)))
    throw py::value_error("coef0 and coef1 must have one value per parameter");
  coef0.resize(n, 0.0);
  coef1.resize(n, 0.0);
  std::vector<unsigned char> has_state(n, 0);
  for (size_t i = 0; i < n && i < has_state_in.size(); ++i) has_state[i] = uses[0] && has_state_in[i];

  std::vector<std::pair<const Arg*, bool>> all;
  for (const Arg& a : params) all.push_back({&a, true});
  for (const Arg& a : grads) all.push_back({&a, false});
  for (const auto& list : states)
    for (const Arg& a : list) all.push_back({&a, true});
  require_disjoint(all);
  if (n == 0) return true;
  if (float_type(params[0]) == Float::f32)
    return run_step<float>(params, grads, states, coef0, coef1, has_state, hyper, check_finite);
  return run_step<double>(params, grads, states, coef0, coef1, has_state, hyper, check_finite);
}

bool optim_all_finite(py::handle arrays_obj) {
  const std::vector<Arg> arrays = array_list(arrays_obj, "arrays", nullptr, false);
  if (arrays.empty()) return true;
  std::vector<int64_t> sizes;
  for (const Arg& a : arrays) sizes.push_back(a.array.size());
  const int threads = fastnn::cpu::num_threads();
  if (float_type(arrays[0]) == Float::f32) {
    std::vector<const float*> p;
    for (const Arg& a : arrays) p.push_back(a.cdata<float>());
    py::gil_scoped_release release;
    return optim_kernels<float>().all_finite(p.data(), sizes.data(), int64_t(p.size()), threads);
  }
  std::vector<const double*> p;
  for (const Arg& a : arrays) p.push_back(a.cdata<double>());
  py::gil_scoped_release release;
  return optim_kernels<double>().all_finite(p.data(), sizes.data(), int64_t(p.size()), threads);
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("optim_step", &optim_step, py::arg("rule"), py::arg("params"), py::arg("grads"),
        py::arg("states"), py::arg("coef0"), py::arg("coef1"), py::arg("has_state"),
        py::arg("hyper"), py::arg("check_finite"),
        "One optimizer step over a group of parameters, in place (see fastnn.optim). With "
        "check_finite, returns False and writes nothing if a gradient holds inf or NaN.");
  m.def("optim_all_finite", &optim_all_finite, py::arg("arrays"),
        "True when no element of the arrays (one dtype) is inf or NaN.");
}

}  // namespace bind
}  // namespace fastnn

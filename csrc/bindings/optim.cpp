// The optimizer step in the _cpu module: the step of bindings/optim_step.h over NumPy
// arrays, with the kernel table's multi-tensor kernels run with the GIL released.
#include "bindings/optim_step.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/dispatch.h"

namespace fastnn {
namespace bind {
namespace {

using optim::Call;
using optim::Entry;
using optim::OptimCache;
using optim::typed;

template <class T>
bool run_call(const Call& c, const OptimHyper& h, bool check_finite) {
  const std::vector<T*> p = typed<T>(c.param);
  const std::vector<const T*> g = typed<const T>(c.grad);
  std::vector<T*> s[kOptimSlots];
  OptimArgs<T> a{int64_t(c.param.size()), c.sizes.data(), p.data(), g.data(), {}, {}, c.has_state.data(), h,
                 check_finite, cpu::num_threads()};
  for (int k = 0; k < kOptimSlots; ++k) {
    s[k] = typed<T>(c.state[k]);
    a.state[k] = s[k].empty() ? nullptr : s[k].data();
  }
  for (int k = 0; k < kOptimScalars; ++k) a.coef[k] = c.coef[k].empty() ? nullptr : c.coef[k].data();
  return cpu::kernels().optim.get<T>().step(a);
}

template <class T>
bool grads_finite(const Call& c) {
  const std::vector<const T*> g = typed<const T>(c.grad);
  return cpu::kernels().optim.get<T>().all_finite(g.data(), c.sizes.data(), int64_t(g.size()), cpu::num_threads());
}

struct CpuBackend {
  static constexpr bool kHost = true;

  // Device arrays reach this module only when the CUDA module cannot take them.
  void accept(const std::vector<const Array*>& arrays) {
    for (const Array* a : arrays) require_host("optim_step", {a});
  }

  py::object fresh(const Entry& e, double value, void*& data) {
    const py::array like = py::reinterpret_borrow<py::array>(e.data);
    py::array a(like.dtype(), std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
    if (e.dtype == ops::DType::float32) std::fill_n(static_cast<float*>(a.mutable_data()), e.size, float(value));
    else std::fill_n(static_cast<double*>(a.mutable_data()), e.size, value);
    data = a.mutable_data();
    return std::move(a);
  }

  // One call scans its gradients inside the kernel, on the threads that then update
  // them; several are all scanned first. The GIL is released throughout.
  bool run(const std::vector<Call>& calls, const std::vector<OptimHyper>& hypers,
           const std::vector<unsigned char>& check_finite) {
    auto each = [](const Call& c, auto&& f) { return c.dtype == ops::DType::float32 ? f(float()) : f(double()); };
    return without_gil([&] {
      if (calls.size() == 1) {
        const Call& c = calls[0];
        return each(c, [&](auto t) { return run_call<decltype(t)>(c, hypers[c.group], check_finite[c.group]); });
      }
      for (const Call& c : calls)
        if (check_finite[c.group] && !each(c, [&](auto t) { return grads_finite<decltype(t)>(c); })) return false;
      for (const Call& c : calls) each(c, [&](auto t) { return run_call<decltype(t)>(c, hypers[c.group], false); });
      return true;
    });
  }
};

bool optim_step(const std::string& rule, py::handle groups, py::handle hypers, py::handle check_finite,
                py::handle state, OptimCache& cache) {
  CpuBackend backend;
  return optim::step(backend, rule, groups, hypers, check_finite, state, &cache);
}

// The names a rule keeps in a parameter's state dict: its slots, and 'step' if it counts steps.
py::list optim_state_names(const std::string& rule_name) {
  OptimHyper h{};
  h.rule = ops::optim_rule(rule_name.c_str());
  py::list names;
  for (int k = 0; k < kOptimSlots; ++k) {
    const char* name = kOptimSlotNames[h.rule][k];
    if (name && !names.contains(name)) names.append(name);
  }
  if (optim_counts_steps(h)) names.append("step");
  return names;
}

// The positions (i, j), i < j, of two arrays of the list whose memory overlaps, or None.
py::object optim_find_overlap(py::handle arrays_obj) {
  const std::vector<Array> arrays = view_list(arrays_obj, "arrays");
  std::vector<ops::Span> spans;
  for (const Array& a : arrays) spans.push_back({a.lo(), a.hi()});
  const auto [i, j] = ops::find_overlap(spans);
  if (i < 0) return py::none();
  return py::make_tuple(i, j);
}

}  // namespace

void bind_optim(py::module_& m) {
  py::class_<OptimCache>(m, "OptimCache",
                         "What an optimizer's steps keep between calls to optim_step (opaque; a copy starts empty).")
      .def(py::init<>())
      .def(py::pickle([](const OptimCache&) { return py::tuple(); }, [](const py::tuple&) { return OptimCache(); }));
  m.def("optim_step", &optim_step, py::arg("rule"), py::arg("groups"), py::arg("hypers"), py::arg("check_finite"),
        py::arg("state"), py::arg("cache"),
        "One optimizer step over every group, in place (see fastnn.optim). groups: a list per group of "
        "fastnn.nn.Parameter (those with a gradient and requires_grad are updated); hypers: a dict per group, "
        "{name: number or bool}, every key the rule takes; check_finite: a bool per group; state: the "
        "optimizer's {Parameter: {name: array or step}}, read and updated (torch's state names); cache: an "
        "OptimCache. Everything is checked before anything is written. Returns False, having written nothing, "
        "when a group with check_finite has a gradient holding inf or NaN.");
  m.def("optim_state_names", &optim_state_names, py::arg("rule"),
        "The names a rule keeps in a parameter's state dict (its state arrays, then 'step' if it counts steps).");
  m.def("optim_find_overlap", &optim_find_overlap, py::arg("arrays"),
        "(i, j) with i < j for two arrays of the list that overlap in memory, or None.");
}

}  // namespace bind
}  // namespace fastnn

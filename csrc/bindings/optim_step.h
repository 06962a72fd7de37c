// The optimizer step that both native modules run (bindings/optim.cpp for _cpu,
// bindings/cuda/optim.cpp for _cuda): fastnn.optim's Optimizer.step makes one call per
// step for all its groups. The call reads the groups' Parameters (their _data, _grad and
// requires_grad) and the optimizer's state dict, checks every parameter of every group
// before anything is written, runs the update (the backend's kernels, one call per
// group and dtype), and then records the new state (fresh state arrays, step counts)
// without running any Python code in between: an exception raised by a signal handler
// (KeyboardInterrupt) comes before the step or after it, never between two groups or
// between an update and its step count.
//
// The checks have a fast path for what a training loop passes at every step on the
// CPU: plain NumPy arrays whose headers are read in place, and written arrays whose
// byte ranges are those proven disjoint at the optimizer's last step (OptimCache).
// Whatever the fast path cannot vouch for (device arrays always) goes through the named
// checks of ops/optim.h, which decide, and name param_groups[g]['params'][i] in their
// errors.
//
// A backend provides:
//   static constexpr bool kHost;          the fast path applies (NumPy arrays)
//   void accept(const std::vector<const Array*>& arrays);
//                                          after the named checks: refuse arrays this
//                                          module does not run (and pick the stream)
//   py::object fresh(const Entry& e, double value, void*& data);
//                                          a new state array like e.data, every element
//                                          `value` (before any write)
//   bool run(calls, hypers, check_finite); the updates; false (nothing written) when a
//                                          group with check_finite has inf or NaN
#pragma once
#include <pybind11/numpy.h>
#include <structmember.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "ops/check.h"
#include "ops/optim.h"

namespace fastnn {
namespace bind {
namespace optim {

using ops::DType;
using ops::Span;
namespace npy = py::detail;

// Kept by each optimizer between steps (the CPU module's fast path): the byte ranges of
// the arrays its last step wrote, in the order they were gathered, and the same ranges
// sorted (disjoint).
struct OptimCache {
  std::vector<Span> written, sorted;
};

// Names made once (interned, never freed; first made with the GIL held).
struct Names {
  PyObject *data, *grad, *requires_grad, *step;
  PyObject* slot[kOptimRules][kOptimSlots];
  PyObject *float32, *float64;  // NumPy's built-in dtypes
  Names() {
    data = PyUnicode_InternFromString("_data");
    grad = PyUnicode_InternFromString("_grad");
    requires_grad = PyUnicode_InternFromString("requires_grad");
    step = PyUnicode_InternFromString("step");
    for (int r = 0; r < kOptimRules; ++r)
      for (int k = 0; k < kOptimSlots; ++k)
        slot[r][k] = kOptimSlotNames[r][k] ? PyUnicode_InternFromString(kOptimSlotNames[r][k]) : nullptr;
    float32 = py::dtype::of<float>().release().ptr();
    float64 = py::dtype::of<double>().release().ptr();
  }
};
inline const Names& names() {
  static const Names n;
  return n;
}

inline std::string type_name(py::handle obj) { return Py_TYPE(obj.ptr())->tp_name; }

// The user's path to parameter i of group g, and to its state.
inline std::string where(int g, int64_t i) {
  return "param_groups[" + std::to_string(g) + "]['params'][" + std::to_string(i) + "]";
}
inline std::string state_where(int g, int64_t i) { return "state[" + where(g, i) + "]"; }

// A parameter the step updates (it has a gradient and requires_grad), as gathered.
struct Entry {
  int group;
  int64_t index;                        // param_groups[group]['params'][index]
  py::object param, data, grad, state;  // state: its state dict (null before its first step)
  bool new_state = false;               // state was made by this step
  py::object slot[kOptimSlots];         // the state arrays the rule uses (null: made fresh)
  bool fresh[kOptimSlots] = {};
  int64_t step = 0;                     // state['step'] before this update
  py::object next_step;                 // step + 1, made before anything is written
  // Filled by the checks.
  DType dtype = DType::other;
  int64_t size = 0;
  void* ptr[2 + kOptimSlots] = {};      // data, grad, state slots
};

// One kernel call: the parameters of one group with one dtype.
struct Call {
  int group;
  DType dtype;
  std::vector<size_t> entries;
  std::vector<int64_t> sizes;
  std::vector<void*> param, grad, state[kOptimSlots];
  std::vector<double> coef[kOptimScalars];
  std::vector<unsigned char> has_state;
};

// Where fastnn.nn.Parameter keeps _data, _grad and _requires_grad (its __slots__), so that
// an exact Parameter's attributes are read without an attribute lookup; -1 if a name is
// not a plain object slot (then, and for subclasses, the attribute is looked up).
struct ParameterSlots {
  PyTypeObject* type = nullptr;
  Py_ssize_t data = -1, grad = -1, requires_grad = -1;
};
inline const ParameterSlots& parameter_slots() {
  static const ParameterSlots slots = [] {
    ParameterSlots s;
    const py::object cls = py::module_::import("fastnn.nn").attr("Parameter");
    s.type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    const py::object own = cls.attr("__dict__");
    auto offset = [&](const char* name) -> Py_ssize_t {
      const py::object d = own.attr("get")(name);
      if (Py_TYPE(d.ptr()) != &PyMemberDescr_Type) return -1;
      const PyMemberDef* m = reinterpret_cast<PyMemberDescrObject*>(d.ptr())->d_member;
      return m->type == T_OBJECT_EX && !(m->flags & READONLY) ? m->offset : -1;
    };
    s.data = offset("_data");
    s.grad = offset("_grad");
    s.requires_grad = offset("_requires_grad");
    cls.inc_ref();  // kept for the process's life: s.type points into it
    return s;
  }();
  return slots;
}

inline py::object attribute(py::handle obj, PyObject* name, int g, int64_t i, Py_ssize_t slot = -1) {
  if (slot >= 0 && Py_TYPE(obj.ptr()) == parameter_slots().type) {
    PyObject* v = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj.ptr()) + slot);
    if (v) return py::reinterpret_borrow<py::object>(v);
  }
  PyObject* v = PyObject_GetAttr(obj.ptr(), name);
  if (!v) {
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
    PyErr_Clear();
    throw ops::TypeError(where(g, i) + " must be a fastnn.nn.Parameter, got " + type_name(obj));
  }
  return py::reinterpret_steal<py::object>(v);
}

// A state dict's 'step': a non-negative integer (exactly a float64 too).
inline int64_t step_count(PyObject* v, int g, int64_t i) {
  constexpr int64_t kMax = int64_t(1) << 53;
  if (PyLong_CheckExact(v)) {
    int overflow = 0;
    const long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow && s >= 0 && s <= kMax) return s;
  }
  const std::string name = state_where(g, i) + "['step']";
  return int_arg(v, name.c_str(), "an integer in [0, 2**53]", 0, kMax);
}

// Every parameter that the step updates, with its state, in group order.
inline std::vector<Entry> gather(int rule, const std::vector<OptimHyper>& hypers, py::handle groups, py::handle state) {
  const Names& n = names();
  const ParameterSlots& slots = parameter_slots();
  std::vector<py::object> lists;
  size_t total = 0;
  for (int g = 0; g < int(hypers.size()); ++g) {
    lists.push_back(groups[py::int_(g)]);
    if (!PyList_Check(lists[g].ptr()) && !PyTuple_Check(lists[g].ptr()))
      throw ops::TypeError("param_groups[" + std::to_string(g) + "]['params'] must be a list, got " +
                           type_name(lists[g]));
    total += size_t(PySequence_Fast_GET_SIZE(lists[g].ptr()));
  }
  std::vector<Entry> entries;
  entries.reserve(total);
  for (int g = 0; g < int(hypers.size()); ++g) {
    const py::object& params = lists[g];
    const OptimHyper& h = hypers[g];
    const int64_t count = PySequence_Fast_GET_SIZE(params.ptr());
    PyObject** items = PySequence_Fast_ITEMS(params.ptr());
    for (int64_t i = 0; i < count; ++i) {
      const py::object p = py::reinterpret_borrow<py::object>(items[i]);
      py::object grad = attribute(p, n.grad, g, i, slots.grad);
      if (grad.is_none()) continue;  // left alone, as torch
      const py::object requires_grad = attribute(p, n.requires_grad, g, i, slots.requires_grad);
      if (!is_bool(requires_grad))
        throw ops::TypeError(where(g, i) + ".requires_grad must be a bool, got " + type_name(requires_grad));
      if (!flag_arg(requires_grad, "requires_grad")) continue;  // frozen: left alone, as torch
      Entry& e = entries.emplace_back();
      e.group = g;
      e.index = i;
      e.param = p;
      e.data = attribute(p, n.data, g, i, slots.data);
      e.grad = std::move(grad);
      PyObject* st = PyDict_GetItemWithError(state.ptr(), p.ptr());  // borrowed
      if (!st) {
        if (PyErr_Occurred()) throw py::error_already_set();
        continue;
      }
      if (!PyDict_Check(st)) throw ops::TypeError(state_where(g, i) + " must be a dict, got " + type_name(st));
      e.state = py::reinterpret_borrow<py::object>(st);
      for (int k = 0; k < kOptimSlots; ++k) {
        if (!optim_slot_used(h, k)) continue;
        PyObject* a = PyDict_GetItemWithError(st, n.slot[rule][k]);
        if (a) e.slot[k] = py::reinterpret_borrow<py::object>(a);
        else if (PyErr_Occurred()) throw py::error_already_set();
      }
      if (optim_counts_steps(h)) {
        PyObject* s = PyDict_GetItemWithError(st, n.step);
        if (s) e.step = step_count(s, g, i);
        else if (PyErr_Occurred()) throw py::error_already_set();
      }
    }
  }
  return entries;
}

// The fast path: every array a plain NumPy array of a built-in float dtype with the
// layout the rules ask for, and no written array overlapping another array. True when
// it vouches for every entry (and has filled in their pointers); false sends the step
// to the named checks, which decide.
inline bool plain_checks(std::vector<Entry>& entries, OptimCache& cache) {
  const Names& n = names();
  PyTypeObject* const ndarray = npy::npy_api::get().PyArray_Type_;
  constexpr int kLayout = npy::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | npy::npy_api::NPY_ARRAY_ALIGNED_;
  constexpr int kWritten = kLayout | npy::npy_api::NPY_ARRAY_WRITEABLE_;
  std::vector<Span> written, read;
  written.reserve(entries.size() * 3);
  read.reserve(entries.size());
  for (Entry& e : entries) {
    if (Py_TYPE(e.data.ptr()) != ndarray) return false;
    const npy::PyArray_Proxy* d = npy::array_proxy(e.data.ptr());
    const int64_t itemsize = d->descr == n.float32 ? 4 : d->descr == n.float64 ? 8 : 0;
    if (!itemsize || (d->flags & kWritten) != kWritten) return false;
    // Another array of the same dtype and shape, with (at least) these flags.
    auto like = [&](const py::object& obj, int flags, void*& ptr) {
      if (Py_TYPE(obj.ptr()) != ndarray) return false;
      const npy::PyArray_Proxy* a = npy::array_proxy(obj.ptr());
      ptr = a->data;
      return a->descr == d->descr && (a->flags & flags) == flags && a->nd == d->nd &&
             std::equal(d->dimensions, d->dimensions + d->nd, a->dimensions);
    };
    int64_t size = 1;
    for (int k = 0; k < d->nd; ++k) size *= d->dimensions[k];
    const uintptr_t bytes = uintptr_t(size * itemsize);
    auto span = [bytes](const void* p) { return Span{uintptr_t(p), uintptr_t(p) + bytes}; };
    e.dtype = itemsize == 4 ? DType::float32 : DType::float64;
    e.size = size;
    e.ptr[0] = d->data;
    written.push_back(span(d->data));
    if (!like(e.grad, kLayout, e.ptr[1])) return false;
    read.push_back(span(e.ptr[1]));
    for (int k = 0; k < kOptimSlots; ++k) {
      if (!e.slot[k]) continue;
      if (!like(e.slot[k], kWritten, e.ptr[2 + k])) return false;
      written.push_back(span(e.ptr[2 + k]));
    }
  }
  if (written != cache.written) {
    std::vector<Span> sorted = written;
    if (!ops::sort_disjoint(sorted)) return false;
    cache.written = std::move(written);
    cache.sorted = std::move(sorted);
  }
  for (const Span& s : read)
    if (ops::hits(cache.sorted, s)) return false;
  return true;
}

// The named checks (ops/optim.h) over views of every array: they raise the error the
// fast path saw, or pass (an ndarray subclass, a dtype object NumPy did not share, device
// arrays), and then fill in the pointers.
template <class Backend>
void named_checks(Backend& backend, int rule, std::vector<Entry>& entries,
                  const std::vector<OptimHyper>& hypers) {
  std::vector<Array> views;
  views.reserve(entries.size() * (2 + kOptimSlots));  // no reallocation: `marked` points into it
  std::vector<std::pair<const Array*, bool>> marked;
  std::vector<const Array*> all;
  for (Entry& e : entries) {
    const std::string w = where(e.group, e.index);
    const Array& d = views.emplace_back(view(e.data, w + ".data"));
    const Array& g = views.emplace_back(view(e.grad, w + ".grad"));
    const Array* state[kOptimSlots] = {};
    for (int k = 0; k < kOptimSlots; ++k)
      if (e.slot[k])
        state[k] = &views.emplace_back(view(e.slot[k], state_where(e.group, e.index) + "['" +
                                                             kOptimSlotNames[rule][k] + "']"));
    ops::check_optim_param(hypers[e.group], d, g, state);
    e.dtype = d.dtype;
    e.size = d.size();
    e.ptr[0] = d.data;
    e.ptr[1] = g.data;
    marked.push_back({&d, true});
    marked.push_back({&g, false});
    for (int k = 0; k < kOptimSlots; ++k)
      if (state[k]) {
        e.ptr[2 + k] = state[k]->data;
        marked.push_back({state[k], true});
      }
  }
  for (const auto& m : marked) all.push_back(m.first);
  ops::require_one_device(all);
  ops::require_optim_disjoint(marked);
  backend.accept(all);
}

// The entries come in group order: each group's run of them makes a call per dtype.
inline std::vector<Call> plan_calls(const std::vector<Entry>& entries) {
  std::vector<Call> calls;
  for (size_t begin = 0, end; begin < entries.size(); begin = end) {
    const int g = entries[begin].group;
    for (end = begin; end < entries.size() && entries[end].group == g;) ++end;
    for (DType t : {DType::float32, DType::float64}) {
      Call c{g, t, {}, {}, {}, {}, {}, {}, {}};
      for (size_t k = begin; k < end; ++k)
        if (entries[k].dtype == t) c.entries.push_back(k);
      if (!c.entries.empty()) calls.push_back(std::move(c));
    }
  }
  return calls;
}

// After the checks, before any write: fresh state arrays (not yet in the state dict),
// the next step counts, the kernels' tables.
template <class Backend>
void prepare(Backend& backend, int rule, std::vector<Call>& calls, std::vector<Entry>& entries,
             const std::vector<OptimHyper>& hypers) {
  for (Call& c : calls) {
    const OptimHyper& h = hypers[c.group];
    int64_t memo_step = -1;
    double coef[kOptimScalars] = {};
    const size_t n = c.entries.size();
    for (auto* v : {&c.param, &c.grad, &c.state[0], &c.state[1], &c.state[2]}) v->reserve(n);
    for (auto& v : c.coef) v.reserve(n);
    c.sizes.reserve(n);
    c.has_state.reserve(n);
    for (size_t k : c.entries) {
      Entry& e = entries[k];
      for (int s = 0; s < kOptimSlots; ++s) {
        if (!optim_slot_used(h, s) || e.slot[s]) continue;
        e.slot[s] = backend.fresh(e, optim_state_initial(h, s), e.ptr[2 + s]);
        e.fresh[s] = true;
      }
      if (!e.state && (optim_counts_steps(h) || std::count(e.fresh, e.fresh + kOptimSlots, true))) {
        e.state = py::dict();  // (SGD without momentum keeps no state, as torch)
        e.new_state = true;
      }
      if (optim_counts_steps(h)) e.next_step = py::int_(e.step + 1);
      if (e.step != memo_step) {  // torch's host arithmetic, once per distinct step count
        optim_param_scalars(h, e.step + 1, coef);
        memo_step = e.step;
      }
      c.sizes.push_back(e.size);
      c.param.push_back(e.ptr[0]);
      c.grad.push_back(e.ptr[1]);
      for (int s = 0; s < kOptimSlots; ++s)
        if (optim_slot_used(h, s)) c.state[s].push_back(e.ptr[2 + s]);
      for (int s = 0; s < kOptimScalars; ++s)
        if (kOptimScalarNames[rule][s]) c.coef[s].push_back(coef[s]);
      c.has_state.push_back(optim_slot_used(h, 0) && !e.fresh[0]);  // SGD: the momentum buffer holds a value
    }
  }
}

template <class T>
std::vector<T*> typed(const std::vector<void*>& v) {
  std::vector<T*> out;
  out.reserve(v.size());
  for (void* p : v) out.push_back(static_cast<T*>(p));
  return out;
}

// Records the step in the state dicts. Plain dict stores of objects made beforehand:
// no Python code runs here.
inline void commit(int rule, const std::vector<Call>& calls, std::vector<Entry>& entries, py::handle state) {
  const Names& n = names();
  for (const Call& c : calls)
    for (size_t k : c.entries) {
      Entry& e = entries[k];
      if (e.new_state && PyDict_SetItem(state.ptr(), e.param.ptr(), e.state.ptr()) != 0)
        throw py::error_already_set();
      for (int s = 0; s < kOptimSlots; ++s)
        if (e.fresh[s] && PyDict_SetItem(e.state.ptr(), n.slot[rule][s], e.slot[s].ptr()) != 0)
          throw py::error_already_set();
      if (e.next_step && PyDict_SetItem(e.state.ptr(), n.step, e.next_step.ptr()) != 0)
        throw py::error_already_set();
    }
}

inline py::sequence sequence_arg(py::handle obj, const char* name, size_t size) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    throw ops::TypeError(std::string(name) + " must be a list, got " + type_name(obj));
  if (size != size_t(-1) && py::len(obj) != size)
    throw ops::ValueError(std::string(name) + " has " + std::to_string(py::len(obj)) + " entries but groups has " +
                          std::to_string(size));
  return py::reinterpret_borrow<py::sequence>(obj);
}

// The hyper-parameter dict as entries, each a flag (a bool) or a number. keys holds the
// names the entries point to.
inline std::vector<ops::HyperEntry> hyper_entries(py::handle hyper, std::vector<std::string>& keys) {
  if (!py::isinstance<py::dict>(hyper))
    throw ops::TypeError("hyper must be a dict, got " + type_name(hyper));
  const auto dict = py::reinterpret_borrow<py::dict>(hyper);
  for (auto item : dict) {
    if (!py::isinstance<py::str>(item.first)) throw ops::TypeError("hyper-parameter names must be str");
    keys.push_back(py::str(item.first));
  }
  std::vector<ops::HyperEntry> entries;
  size_t i = 0;
  for (auto item : dict) {
    ops::HyperEntry e{keys[i++].c_str(), false, 0.0, false};
    const py::handle v = item.second;
    if (is_bool(v)) {
      e.is_flag = true;
      e.flag = flag_arg(v, e.key);
    } else if (PyFloat_Check(v.ptr()) || PyIndex_Check(v.ptr()) ||
               (PyNumber_Check(v.ptr()) && !py::isinstance<py::array>(v))) {
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

// One step (see the top of this file). cache: null without the fast path.
template <class Backend>
bool step(Backend& backend, const std::string& rule_name, py::handle groups_obj, py::handle hypers_obj,
          py::handle check_finite_obj, py::handle state, OptimCache* cache) {
  const int rule = ops::optim_rule(rule_name.c_str());
  const py::sequence groups = sequence_arg(groups_obj, "groups", size_t(-1));
  const size_t count = py::len(groups);
  const py::sequence hyper_list = sequence_arg(hypers_obj, "hypers", count);
  const py::sequence check_list = sequence_arg(check_finite_obj, "check_finite", count);
  std::vector<OptimHyper> hypers;
  std::vector<unsigned char> check_finite;
  for (size_t g = 0; g < count; ++g) {
    std::vector<std::string> keys;
    hypers.push_back(ops::optim_hyper(rule, hyper_entries(hyper_list[g], keys)));
    check_finite.push_back(flag_arg(check_list[g], "check_finite"));
  }
  if (!PyDict_Check(state.ptr())) throw ops::TypeError("state must be a dict, got " + type_name(state));

  std::vector<Entry> entries = gather(rule, hypers, groups, state);
  if (entries.empty()) return true;
  if (!(Backend::kHost && cache && plain_checks(entries, *cache))) named_checks(backend, rule, entries, hypers);
  std::vector<Call> calls = plan_calls(entries);
  prepare(backend, rule, calls, entries, hypers);
  if (!backend.run(calls, hypers, check_finite)) return false;
  commit(rule, calls, entries, state);
  return true;
}

}  // namespace optim
}  // namespace bind
}  // namespace fastnn

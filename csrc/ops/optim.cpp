#include "ops/optim.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "ops/array.h"
#include "ops/check.h"

namespace fastnn {
namespace ops {

namespace {

const char* const kRuleNames[] = {"sgd", "adagrad", "rmsprop", "adam"};

// Every hyper-parameter key, its field of OptimHyper (a number or a flag) and the rules
// that take it (bit r for rule r).
struct HyperKey {
  const char* name;
  double OptimHyper::*number;
  bool OptimHyper::*flag;
  unsigned rules;
};
constexpr unsigned kSgd = 1u << kOptimSgd, kAdagrad = 1u << kOptimAdagrad, kRmsprop = 1u << kOptimRmsprop,
                   kAdam = 1u << kOptimAdam, kEvery = kSgd | kAdagrad | kRmsprop | kAdam;
const HyperKey kHyperKeys[] = {
    {"lr", &OptimHyper::lr, nullptr, kEvery},
    {"weight_decay", &OptimHyper::weight_decay, nullptr, kEvery},
    {"grad_scale", &OptimHyper::grad_scale, nullptr, kEvery},
    {"maximize", nullptr, &OptimHyper::maximize, kEvery},
    {"momentum", &OptimHyper::momentum, nullptr, kSgd | kRmsprop},
    {"dampening", &OptimHyper::dampening, nullptr, kSgd},
    {"nesterov", nullptr, &OptimHyper::nesterov, kSgd},
    {"eps", &OptimHyper::eps, nullptr, kAdagrad | kRmsprop | kAdam},
    {"alpha", &OptimHyper::beta2, nullptr, kRmsprop},
    {"centered", nullptr, &OptimHyper::centered, kRmsprop},
    {"beta1", &OptimHyper::beta1, nullptr, kAdam},
    {"beta2", &OptimHyper::beta2, nullptr, kAdam},
    {"amsgrad", nullptr, &OptimHyper::amsgrad, kAdam},
    {"decoupled", nullptr, &OptimHyper::decoupled, kAdam},
};

std::string keys_of(int rule) {
  std::string s;
  for (const HyperKey& k : kHyperKeys)
    if (k.rules & (1u << rule)) s += (s.empty() ? "" : ", ") + std::string(k.name);
  return s;
}

// The slot named `name` among names[0..n) (ValueError listing them otherwise).
int slot_of(const char* const* names, int n, const char* name, int rule, const char* what) {
  std::string known;
  for (int k = 0; k < n; ++k) {
    if (!names[k]) continue;
    if (std::string(name) == names[k]) return k;
    known += (known.empty() ? "" : ", ") + std::string(names[k]);
  }
  throw ValueError(std::string(what) + " '" + name + "' is not one of rule '" + kRuleNames[rule] +
                   "''s (" + (known.empty() ? "it has none" : known) + ")");
}

// No written array may overlap any other array (gradients may overlap each other): one
// sweep over the arrays sorted by address.
void require_disjoint(const std::vector<std::pair<const Array*, bool>>& arrays) {
  std::vector<std::pair<const Array*, bool>> v;
  for (const auto& a : arrays)
    if (a.first->nbytes() > 0) v.push_back(a);
  std::sort(v.begin(), v.end(), [](const auto& x, const auto& y) { return x.first->lo() < y.first->lo(); });
  const Array* reach = nullptr;          // the array reaching furthest so far
  const Array* reach_written = nullptr;  // the written array reaching furthest so far
  for (const auto& [a, written] : v) {
    const Array* hit = nullptr;
    if (reach_written && a->lo() < reach_written->hi()) hit = reach_written;
    else if (written && reach && a->lo() < reach->hi()) hit = reach;
    if (hit)
      throw ValueError(a->name + " overlaps " + hit->name +
                       " in memory; an optimizer step writes parameters and state in place");
    if (!reach || a->hi() > reach->hi()) reach = a;
    if (written && (!reach_written || a->hi() > reach_written->hi())) reach_written = a;
  }
}

}  // namespace

int optim_rule(const char* name) {
  for (int r = 0; r < 4; ++r)
    if (std::string(name) == kRuleNames[r]) return r;
  throw ValueError("rule must be 'sgd', 'adagrad', 'rmsprop' or 'adam', got '" + std::string(name) + "'");
}

OptimHyper optim_hyper(int rule, const std::vector<HyperEntry>& entries) {
  OptimHyper h{};
  h.rule = rule;
  unsigned seen = 0;  // bit k: kHyperKeys[k] was given
  for (const HyperEntry& e : entries) {
    size_t k = 0;
    while (k < std::size(kHyperKeys) &&
           !((kHyperKeys[k].rules & (1u << rule)) && std::string(e.key) == kHyperKeys[k].name))
      ++k;
    if (k == std::size(kHyperKeys))
      throw ValueError("unknown hyper-parameter '" + std::string(e.key) + "' for rule '" + kRuleNames[rule] +
                       "'; it takes " + keys_of(rule));
    const HyperKey& key = kHyperKeys[k];
    if (key.flag) {
      if (!e.is_flag) throw TypeError("hyper-parameter '" + std::string(e.key) + "' must be a bool");
      h.*key.flag = e.flag;
    } else {
      if (e.is_flag) throw TypeError("hyper-parameter '" + std::string(e.key) + "' must be a number, not a bool");
      h.*key.number = e.number;
    }
    seen |= 1u << k;
  }
  for (size_t k = 0; k < std::size(kHyperKeys); ++k)
    if ((kHyperKeys[k].rules & (1u << rule)) && !(seen & (1u << k)))
      throw ValueError("missing hyper-parameter '" + std::string(kHyperKeys[k].name) + "' for rule '" +
                       kRuleNames[rule] + "'; it takes " + keys_of(rule));
  if (!(h.lr >= 0)) throw ValueError("lr must be >= 0, got " + repr(h.lr));
  if (!(h.eps >= 0)) throw ValueError("eps must be >= 0, got " + repr(h.eps));
  require_positive(h.grad_scale, "grad_scale");
  return h;
}

int optim_state_slot(int rule, const char* name) {
  return slot_of(kOptimSlotNames[rule], kOptimSlots, name, rule, "state");
}

int optim_scalar_slot(int rule, const char* name) {
  return slot_of(kOptimScalarNames[rule], kOptimScalars, name, rule, "scalar");
}

void check_array_list(const std::vector<Array>& arrays) {
  require_one_device([&] {
    std::vector<const Array*> all;
    for (const Array& a : arrays) all.push_back(&a);
    return all;
  }());
  for (size_t i = 0; i < arrays.size(); ++i) {
    const Array& a = arrays[i];
    require_float(a);
    require_layout(a);
    if (i > 0 && a.dtype != arrays[0].dtype)
      throw TypeError(a.name + " has dtype " + a.dtype_name + " but " + arrays[0].name + " has " +
                      arrays[0].dtype_name + "; one call takes one dtype");
  }
}

void check_optim_step(const OptimHyper& h, const std::vector<Array>& params, const std::vector<Array>& grads,
                      const std::vector<Array> (&state)[kOptimSlots],
                      const std::vector<double> (&scalars)[kOptimScalars]) {
  const size_t n = params.size();
  std::vector<const Array*> all;
  for (const Array& a : params) all.push_back(&a);
  for (const Array& a : grads) all.push_back(&a);
  for (const auto& list : state)
    for (const Array& a : list) all.push_back(&a);
  require_one_device(all);

  check_array_list(params);
  for (const Array& p : params) require_writeable(p);
  auto like_params = [&](const std::vector<Array>& list, const std::string& name, bool written) {
    if (list.size() != n)
      throw ValueError(name + " has " + std::to_string(list.size()) + " arrays but params has " +
                       std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
      require_like(list[i], params[i], params[i].shape);
      if (written) require_writeable(list[i]);
    }
  };
  like_params(grads, "grads", false);
  for (int k = 0; k < kOptimSlots; ++k) {
    const char* name = kOptimSlotNames[h.rule][k];
    if (optim_slot_used(h, k)) like_params(state[k], std::string("state '") + name + "'", true);
    else if (!state[k].empty())
      throw ValueError(std::string("state '") + name + "' must not be given: rule '" + kRuleNames[h.rule] +
                       "' does not use it with these hyper-parameters");
  }
  for (int k = 0; k < kOptimScalars; ++k) {
    const char* name = kOptimScalarNames[h.rule][k];
    if (name && scalars[k].size() != n)
      throw ValueError(std::string("scalar '") + name + "' must have one value per parameter (" +
                       std::to_string(n) + "), got " + std::to_string(scalars[k].size()));
  }

  std::vector<std::pair<const Array*, bool>> marked;
  for (const Array& a : params) marked.push_back({&a, true});
  for (const Array& a : grads) marked.push_back({&a, false});
  for (const auto& list : state)
    for (const Array& a : list) marked.push_back({&a, true});
  require_disjoint(marked);
}

}  // namespace ops
}  // namespace fastnn

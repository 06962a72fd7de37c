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

const char* const kRuleNames[kOptimRules] = {"sgd", "adagrad", "rmsprop", "adam", "adadelta"};

// Every hyper-parameter key, its field of OptimHyper (a number or a flag) and the rules
// that take it (bit r for rule r).
struct HyperKey {
  const char* name;
  double OptimHyper::*number;
  bool OptimHyper::*flag;
  unsigned rules;
};
constexpr unsigned kSgd = 1u << kOptimSgd, kAdagrad = 1u << kOptimAdagrad, kRmsprop = 1u << kOptimRmsprop,
                   kAdam = 1u << kOptimAdam, kAdadelta = 1u << kOptimAdadelta,
                   kEvery = kSgd | kAdagrad | kRmsprop | kAdam | kAdadelta;
const HyperKey kHyperKeys[] = {
    {"lr", &OptimHyper::lr, nullptr, kEvery},
    {"weight_decay", &OptimHyper::weight_decay, nullptr, kEvery},
    {"grad_scale", &OptimHyper::grad_scale, nullptr, kEvery},
    {"maximize", nullptr, &OptimHyper::maximize, kEvery},
    {"momentum", &OptimHyper::momentum, nullptr, kSgd | kRmsprop},
    {"dampening", &OptimHyper::dampening, nullptr, kSgd},
    {"nesterov", nullptr, &OptimHyper::nesterov, kSgd},
    {"eps", &OptimHyper::eps, nullptr, kAdagrad | kRmsprop | kAdam | kAdadelta},
    {"lr_decay", &OptimHyper::lr_decay, nullptr, kAdagrad},
    {"initial_accumulator_value", &OptimHyper::initial_accumulator, nullptr, kAdagrad},
    {"alpha", &OptimHyper::beta2, nullptr, kRmsprop},
    {"rho", &OptimHyper::beta2, nullptr, kAdadelta},
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

}  // namespace

// One sweep over the arrays sorted by address.
void require_optim_disjoint(const std::vector<std::pair<const Array*, bool>>& arrays) {
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

int optim_rule(const char* name) {
  for (int r = 0; r < kOptimRules; ++r)
    if (std::string(name) == kRuleNames[r]) return r;
  throw ValueError("rule must be 'sgd', 'adagrad', 'rmsprop', 'adam' or 'adadelta', got '" + std::string(name) + "'");
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
  const std::pair<double, const char*> at_least_zero[] = {{h.lr, "lr"}, {h.eps, "eps"}, {h.weight_decay, "weight_decay"}};
  for (const auto& [v, name] : at_least_zero)
    if (!(v >= 0) || std::isinf(v)) throw ValueError(std::string(name) + " must be a finite number >= 0, got " + repr(v));
  require_positive(h.grad_scale, "grad_scale");
  return h;
}

void check_optim_param(const OptimHyper& h, const Array& param, const Array& grad,
                       const Array* const (&state)[kOptimSlots]) {
  std::vector<const Array*> all = {&param, &grad};
  for (const Array* a : state)
    if (a) all.push_back(a);
  require_one_device(all);
  require_float(param);
  require_layout(param);
  require_writeable(param);
  require_like(grad, param, param.shape);
  for (int k = 0; k < kOptimSlots; ++k) {
    if (!state[k]) continue;
    if (!optim_slot_used(h, k)) throw std::logic_error("check_optim_param: a state array the rule does not use");
    require_like(*state[k], param, param.shape);
    require_writeable(*state[k]);
  }
}

namespace {

// The slot named `name` among names[0..n) (ValueError listing them otherwise).
int slot_of(const char* const* names, int n, const char* name, int rule, const char* what) {
  std::string known;
  for (int k = 0; k < n; ++k) {
    if (!names[k]) continue;
    if (std::string(name) == names[k]) return k;
    known += (known.empty() ? "" : ", ") + std::string(names[k]);
  }
  throw ValueError(std::string(what) + " '" + name + "' is not one of rule '" + kRuleNames[rule] + "''s (" +
                   (known.empty() ? "it has none" : known) + ")");
}

}  // namespace

int optim_state_slot(int rule, const char* name) {
  return slot_of(kOptimSlotNames[rule], kOptimSlots, name, rule, "state");
}

int optim_scalar_slot(int rule, const char* name) {
  return slot_of(kOptimScalarNames[rule], kOptimScalars, name, rule, "scalar");
}

void check_array_list(const std::vector<Array>& arrays) {
  std::vector<const Array*> all;
  for (const Array& a : arrays) all.push_back(&a);
  require_one_device(all);
  for (const Array& a : arrays) {
    require_float(a);
    require_layout(a);
    if (a.dtype != arrays[0].dtype)
      throw TypeError(a.name + " has dtype " + a.dtype_name + " but " + arrays[0].name + " has " +
                      arrays[0].dtype_name + "; one call takes one dtype");
  }
}

void check_optim_step(const OptimHyper& h, const std::vector<Array>& params, const std::vector<Array>& grads,
                      const std::vector<Array> (&state)[kOptimSlots],
                      const std::vector<double> (&scalars)[kOptimScalars]) {
  const size_t n = params.size();
  auto count = [&](size_t size, const std::string& name) {
    if (size != n)
      throw ValueError(name + " has " + std::to_string(size) + " arrays but params has " + std::to_string(n));
  };
  count(grads.size(), "grads");
  for (int k = 0; k < kOptimSlots; ++k) {  // (a slot used or given has a name)
    if (optim_slot_used(h, k)) count(state[k].size(), std::string("state '") + kOptimSlotNames[h.rule][k] + "'");
    else if (!state[k].empty())
      throw ValueError(std::string("state '") + kOptimSlotNames[h.rule][k] + "' must not be given: rule '" +
                       kRuleNames[h.rule] + "' does not use it with these hyper-parameters");
  }
  for (int k = 0; k < kOptimScalars; ++k) {
    const char* name = kOptimScalarNames[h.rule][k];
    if (name && scalars[k].size() != n)
      throw ValueError(std::string("scalar '") + name + "' must have one value per parameter (" +
                       std::to_string(n) + "), got " + std::to_string(scalars[k].size()));
  }
  std::vector<std::pair<const Array*, bool>> marked;
  std::vector<const Array*> all;
  for (size_t i = 0; i < n; ++i) {
    const Array* slots[kOptimSlots] = {};
    for (int k = 0; k < kOptimSlots; ++k)
      if (!state[k].empty()) slots[k] = &state[k][i];
    check_optim_param(h, params[i], grads[i], slots);
    marked.push_back({&params[i], true});
    marked.push_back({&grads[i], false});
    for (const Array* a : slots)
      if (a) marked.push_back({a, true});
  }
  for (const auto& m : marked) all.push_back(m.first);
  require_one_device(all);
  require_optim_disjoint(marked);
}

bool sort_disjoint(std::vector<Span>& spans) {
  spans.erase(std::remove_if(spans.begin(), spans.end(), [](const Span& s) { return s.first == s.second; }),
              spans.end());
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k)
    if (spans[k].first < spans[k - 1].second) return false;  // disjoint so far: hi grows with lo
  return true;
}

bool hits(const std::vector<Span>& sorted, Span s) {
  if (s.first == s.second) return false;
  // The first span ending after s starts (ends grow with starts in a disjoint sorted list).
  const auto it = std::upper_bound(sorted.begin(), sorted.end(), s.first,
                                   [](uintptr_t lo, const Span& x) { return lo < x.second; });
  return it != sorted.end() && it->first < s.second;
}

std::pair<int64_t, int64_t> find_overlap(const std::vector<Span>& spans) {
  std::vector<int64_t> order;
  for (size_t k = 0; k < spans.size(); ++k)
    if (spans[k].first != spans[k].second) order.push_back(int64_t(k));
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return spans[a] < spans[b]; });
  int64_t reach = -1;  // the span reaching furthest so far
  for (int64_t k : order) {
    if (reach >= 0 && spans[k].first < spans[reach].second) return {std::min(k, reach), std::max(k, reach)};
    if (reach < 0 || spans[k].second > spans[reach].second) reach = k;
  }
  return {-1, -1};
}

}  // namespace ops
}  // namespace fastnn

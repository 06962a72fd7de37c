// Optimizer update rules shared by the CPU and CUDA kernels: one function per rule
// that updates one element (or, on the CPU, 16 lanes) of a parameter in place.
//
// Each rule repeats torch.optim's single-tensor path operation by operation (same
// order, hyper-parameters rounded to the parameter's dtype as torch rounds Python
// scalars), without FMA contraction. V is T or a CPU vector of T; besides + - * the
// rules call optim_div (vector or scalar divisor), optim_sqrt and optim_max, which the
// scalar overloads below and the CPU's vector overloads (found by argument-dependent
// lookup) provide.
#pragma once
#include <math.h>
#include "fastnn/config.h"

// Plain data, the same for every instruction set (outside the per-ISA namespace).
namespace fastnn {
enum OptimRule : int { kOptimSgd = 0, kOptimAdagrad = 1, kOptimRmsprop = 2, kOptimAdam = 3 };

// A group's hyper-parameters as given (float64), identical for every parameter.
struct OptimHyper {
  int rule;
  double lr, weight_decay, momentum, dampening;
  double beta1, beta2;  // Adam; RMSprop's alpha is beta2
  double eps, grad_scale;
  bool maximize, nesterov, decoupled, amsgrad, centered;
};

// A parameter's state arrays, by slot (state[slot][i] in the kernels' arguments), with
// torch.optim's names; null where a rule has no such slot.
constexpr int kOptimSlots = 3;
constexpr const char* kOptimSlotNames[4][kOptimSlots] = {
    {"momentum_buffer", nullptr, nullptr},          // SGD
    {"sum", nullptr, nullptr},                      // Adagrad
    {"square_avg", "grad_avg", "momentum_buffer"},  // RMSprop
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},    // Adam
};
// A parameter's step-dependent scalars (float64, computed by the caller as torch does
// on the host), by slot (coef[slot][i]).
constexpr int kOptimScalars = 2;
constexpr const char* kOptimScalarNames[4][kOptimScalars] = {
    {nullptr, nullptr},
    {"neg_clr", nullptr},                          // -lr / (1 + (step - 1) * lr_decay)
    {nullptr, nullptr},
    {"neg_step_size", "bias_correction2_sqrt"},    // -lr / (1 - beta1^step), sqrt(1 - beta2^step)
};
}  // namespace fastnn

FASTNN_NAMESPACE_BEGIN

// torch: SGD uses momentum when != 0, RMSprop when > 0.
FASTNN_HD bool optim_uses_momentum(const OptimHyper& h) {
  return h.rule == kOptimSgd ? h.momentum != 0 : h.momentum > 0;
}

// Whether the update reads and writes state slot `slot` with these hyper-parameters.
FASTNN_HD bool optim_slot_used(const OptimHyper& h, int slot) {
  switch (h.rule) {
    case kOptimSgd: return slot == 0 && optim_uses_momentum(h);
    case kOptimAdagrad: return slot == 0;
    case kOptimRmsprop: return slot == 0 || (slot == 1 && h.centered) || (slot == 2 && optim_uses_momentum(h));
    case kOptimAdam: return slot < 2 || (slot == 2 && h.amsgrad);
  }
  return false;
}

FASTNN_HD float optim_div(float a, float b) { return a / b; }
FASTNN_HD double optim_div(double a, double b) { return a / b; }
FASTNN_HD float optim_sqrt(float a) { return sqrtf(a); }
FASTNN_HD double optim_sqrt(double a) { return sqrt(a); }
// torch.maximum: NaN if either is NaN.
FASTNN_HD float optim_max(float a, float b) { return (a > b || a != a) ? a : b; }
FASTNN_HD double optim_max(double a, double b) { return (a > b || a != a) ? a : b; }

// The same in the parameter's dtype, as torch's tensor-scalar ops see them.
template <class T>
struct OptimScalars {
  T neg_lr, weight_decay, decay;     // decay = 1 - lr * weight_decay (AdamW)
  T momentum, one_minus_dampening;
  T lerp_w, lerp_w_comp;             // torch's lerp weight (1 - beta1, or 1 - alpha) and 1 - it
  bool lerp_small;                   // |weight| < 0.5 picks torch's lerp formula
  T beta2, one_minus_beta2;          // alpha and 1 - alpha for RMSprop
  T eps, grad_scale;
  bool scaled, maximize, has_wd, use_momentum, nesterov, decoupled, amsgrad, centered;
};

template <class T>
FASTNN_HD OptimScalars<T> optim_scalars(const OptimHyper& h) {
  OptimScalars<T> s;
  s.neg_lr = T(-h.lr);
  s.weight_decay = T(h.weight_decay);
  s.decay = T(1 - h.lr * h.weight_decay);
  s.momentum = T(h.momentum);
  s.one_minus_dampening = T(1 - h.dampening);
  const double lerp_of = h.rule == kOptimRmsprop ? h.beta2 : h.beta1;
  s.lerp_w = T(1 - lerp_of);
  s.lerp_w_comp = T(1) - s.lerp_w;
  s.lerp_small = (s.lerp_w < T(0) ? -s.lerp_w : s.lerp_w) < T(0.5);
  s.beta2 = T(h.beta2);
  s.one_minus_beta2 = T(1 - h.beta2);
  s.eps = T(h.eps);
  s.grad_scale = T(h.grad_scale);
  s.scaled = h.grad_scale != 1.0;
  s.maximize = h.maximize;
  s.has_wd = h.weight_decay != 0;
  s.use_momentum = optim_uses_momentum(h);
  s.nesterov = h.nesterov;
  s.decoupled = h.decoupled;
  s.amsgrad = h.amsgrad;
  s.centered = h.centered;
  return s;
}

// The gradient the rule sees: divided by the loss scale, negated for maximize.
template <class V, class T>
FASTNN_HD V optim_grad(V g, const OptimScalars<T>& s) {
  if (s.scaled) g = optim_div(g, s.grad_scale);
  if (s.maximize) g = g * T(-1);
  return g;
}

// torch.lerp(a, b, w) with torch's two formulas.
template <class V, class T>
FASTNN_HD V optim_lerp(V a, V b, const OptimScalars<T>& s) {
  return s.lerp_small ? a + s.lerp_w * (b - a) : b - (b - a) * s.lerp_w_comp;
}

// SGD. buf is read only when has_buf (torch clones the gradient on the first step).
template <class V, class T>
FASTNN_HD void sgd_update(V& p, V g, V& buf, bool has_buf, const OptimScalars<T>& s) {
  g = optim_grad(g, s);
  if (s.has_wd) g = g + s.weight_decay * p;
  if (s.use_momentum) {
    buf = has_buf ? buf * s.momentum + s.one_minus_dampening * g : g;
    g = s.nesterov ? g + s.momentum * buf : buf;
  }
  p = p + s.neg_lr * g;
}

// Adagrad; neg_clr = -lr / (1 + (step - 1) * lr_decay), computed in float64.
template <class V, class T>
FASTNN_HD void adagrad_update(V& p, V g, V& sum, T neg_clr, const OptimScalars<T>& s) {
  g = optim_grad(g, s);
  if (s.has_wd) g = g + s.weight_decay * p;
  sum = sum + g * g;
  const V std_ = optim_sqrt(sum) + s.eps;
  p = p + optim_div(neg_clr * g, std_);
}

// RMSprop: square_avg always, grad_avg if centered, buf if momentum > 0.
template <class V, class T>
FASTNN_HD void rmsprop_update(V& p, V g, V& square_avg, V& grad_avg, V& buf,
                              const OptimScalars<T>& s) {
  g = optim_grad(g, s);
  if (s.has_wd) g = g + s.weight_decay * p;
  square_avg = square_avg * s.beta2 + (s.one_minus_beta2 * g) * g;
  V avg;
  if (s.centered) {
    grad_avg = optim_lerp(grad_avg, g, s);
    avg = optim_sqrt(square_avg + (T(-1) * grad_avg) * grad_avg);
  } else {
    avg = optim_sqrt(square_avg);
  }
  avg = avg + s.eps;
  if (s.use_momentum) {
    buf = buf * s.momentum + optim_div(g, avg);
    p = p + s.neg_lr * buf;
  } else {
    p = p + optim_div(s.neg_lr * g, avg);
  }
}

// Adam / AdamW. neg_step_size = -lr / (1 - beta1^step) and bc2_sqrt =
// sqrt(1 - beta2^step), computed in float64. max_sq is used only with amsgrad.
template <class V, class T>
FASTNN_HD void adam_update(V& p, V g, V& exp_avg, V& exp_avg_sq, V& max_sq, T neg_step_size,
                           T bc2_sqrt, const OptimScalars<T>& s) {
  g = optim_grad(g, s);
  if (s.has_wd) {
    if (s.decoupled) p = p * s.decay;
    else g = g + s.weight_decay * p;
  }
  exp_avg = optim_lerp(exp_avg, g, s);
  exp_avg_sq = exp_avg_sq * s.beta2 + (s.one_minus_beta2 * g) * g;
  V denom;
  if (s.amsgrad) {
    max_sq = optim_max(max_sq, exp_avg_sq);
    denom = optim_div(optim_sqrt(max_sq), bc2_sqrt) + s.eps;
  } else {
    denom = optim_div(optim_sqrt(exp_avg_sq), bc2_sqrt) + s.eps;
  }
  p = p + optim_div(neg_step_size * exp_avg, denom);
}

FASTNN_NAMESPACE_END

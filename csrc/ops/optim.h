// The multi-tensor optimizer step for every backend: the arguments its kernels take,
// the kernels a backend provides, and the typed call protocol (ops/optim.cpp): named
// hyper-parameters and named state slots, checked for every parameter of every group
// before any array is written. The update rules, the slot table and the host-side
// per-parameter scalars are in fastnn/optim_math.h.
#pragma once
#include <stdint.h>

#include <utility>
#include <vector>  // declarations of the checks only: nothing instantiated in the kernels

#include "fastnn/optim_math.h"
#include "ops/launch.h"

namespace fastnn {

// One optimizer step over a group of `count` parameters (multi-tensor). Tensor i has
// sizes[i] elements; its state arrays are state[slot][i] (fastnn/optim_math.h names the
// slots of each rule), its step-dependent scalars coef[k][i] (float64) and has_state[i]
// (SGD: the momentum buffer exists). Every array is read once and written once.
template <class T>
struct OptimArgs {
  int64_t count;
  const int64_t* sizes;
  T* const* param;
  const T* const* grad;
  T* const* state[kOptimSlots];
  const double* coef[kOptimScalars];
  const unsigned char* has_state;
  fastnn::OptimHyper hyper;
  bool check_finite;  // scan the gradients first; any inf or NaN: write nothing
  int threads;
};

template <class T>
struct OptimKernels {
  bool (*step)(const OptimArgs<T>&);  // false: a gradient held inf or NaN, nothing written
  // True when no element of the count arrays is inf or NaN (read-only pass).
  bool (*all_finite)(const T* const* arrays, const int64_t* sizes, int64_t count, int threads);
};
using OptimTable = PerFloat<OptimKernels>;

namespace ops {

struct Array;

int optim_rule(const char* name);  // "sgd", "adagrad", "rmsprop", "adam", "adadelta"

// One entry of the call's hyper-parameter dict: a number or a flag.
struct HyperEntry {
  const char* key;
  bool is_flag;
  double number;
  bool flag;
};
// The rule's hyper-parameters from the entries: every key the rule takes, each of its
// kind (TypeError otherwise); an unknown or missing key is a ValueError, never a
// silent 0. Also checks lr, eps, weight_decay >= 0 and grad_scale finite and > 0.
OptimHyper optim_hyper(int rule, const std::vector<HyperEntry>& entries);

// One parameter of a step: param (written) float32 or float64, C-contiguous, aligned;
// grad like it; state[slot] like it and writeable for each slot the rule uses (null:
// not given, made fresh after the checks).
void check_optim_param(const OptimHyper& h, const Array& param, const Array& grad,
                       const Array* const (&state)[kOptimSlots]);
// No written array (second = true) overlaps any other array; read arrays may overlap
// each other. The message names both arrays.
void require_optim_disjoint(const std::vector<std::pair<const Array*, bool>>& arrays);

// The per-group call with arrays passed directly (the CUDA module's optim_step_arrays,
// for CUDA graphs): state lists and per-parameter scalars by name. The slot of a state
// array or scalar the rule names so (ValueError for another name); the checks of one
// call: params (written), grads like params, state[slot] (like params, written; empty
// for a slot the rule leaves unused, and only then), and the scalars the rule takes, one
// per parameter; check_optim_param for each parameter and require_optim_disjoint over all.
int optim_state_slot(int rule, const char* name);
int optim_scalar_slot(int rule, const char* name);
void check_optim_step(const OptimHyper& h, const std::vector<Array>& params, const std::vector<Array>& grads,
                      const std::vector<Array> (&state)[kOptimSlots],
                      const std::vector<double> (&scalars)[kOptimScalars]);
// optim_all_finite(arrays): float32 or float64, one dtype, one device.
void check_array_list(const std::vector<Array>& arrays);

// A byte range [lo, hi) of memory.
using Span = std::pair<uintptr_t, uintptr_t>;
// Sorts non-empty spans by address; false if two of them overlap.
bool sort_disjoint(std::vector<Span>& spans);
// Whether [lo, hi) overlaps one of the sorted, disjoint spans.
bool hits(const std::vector<Span>& sorted, Span s);
// The positions (i, j), i < j, of two overlapping non-empty spans of the list, or (-1, -1).
std::pair<int64_t, int64_t> find_overlap(const std::vector<Span>& spans);

}  // namespace ops
}  // namespace fastnn

// The multi-tensor optimizer step for every backend: the arguments its kernels take,
// the kernels a backend provides, and the typed call protocol (ops/optim.cpp): named
// hyper-parameters, named state slots and per-parameter scalars, checked before any
// array is written. The update rules and the slot table are in fastnn/optim_math.h.
#pragma once
#include <stdint.h>

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

int optim_rule(const char* name);  // "sgd", "adagrad", "rmsprop", "adam"

// One entry of the call's hyper-parameter dict: a number or a flag.
struct HyperEntry {
  const char* key;
  bool is_flag;
  double number;
  bool flag;
};
// The rule's hyper-parameters from the entries: every key the rule takes, each of its
// kind (TypeError otherwise); an unknown or missing key is a ValueError, never a
// silent 0. Also checks lr >= 0, eps >= 0 and grad_scale finite and > 0.
OptimHyper optim_hyper(int rule, const std::vector<HyperEntry>& entries);
// The slot of a state array or per-parameter scalar the rule names so (ValueError for
// another name).
int optim_state_slot(int rule, const char* name);
int optim_scalar_slot(int rule, const char* name);

// The arrays of one step: params (written), grads (like params), state[slot] (like
// params, written; empty for a slot the rule leaves unused, and only then), and the
// per-parameter scalars the rule takes. No written array may overlap another array
// (gradients may overlap each other).
void check_optim_step(const OptimHyper& h, const std::vector<Array>& params, const std::vector<Array>& grads,
                      const std::vector<Array> (&state)[kOptimSlots],
                      const std::vector<double> (&scalars)[kOptimScalars]);
// optim_all_finite(arrays): float32 or float64, one dtype.
void check_array_list(const std::vector<Array>& arrays);

}  // namespace ops
}  // namespace fastnn

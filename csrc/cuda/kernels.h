// The CUDA kernels as the bindings call them (csrc/bindings/cuda/): one launch function
// per op, defined in csrc/cuda/<family>.cu for float and double. Each takes the stream
// to launch on, queues its kernels there and returns without waiting for them; a CUDA
// error is thrown as cuda::Error (RuntimeError in Python, with CUDA's own message).
// Workspace the kernels need (a few bytes per channel) comes from CUDA's stream-ordered
// allocator on the same stream; the outputs are allocated by the bindings (CuPy's pool).
#pragma once
#include <cuda_runtime_api.h>
#include <stdint.h>

#include <stdexcept>
#include <string>

#include "ops/activations.h"
#include "ops/batch_norm.h"
#include "ops/channel_activations.h"
#include "ops/dropout.h"
#include "ops/optim.h"
#include "ops/spatial.h"

namespace fastnn {
namespace cuda {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws Error "CUDA error in <what>: <CUDA's message> (<name>)" unless err is success.
void check(cudaError_t err, const char* what);

// ------------------------------------------------------------------ batch norm
// Training: statistics by pieces (common.cuh), merged per channel with Chan's formula,
// the running statistics updated on the device, then y. Eval: y from the running ones.
template <class T>
struct BnForwardLaunch {
  const T* x;
  T* y;                     // may be x
  BnShape shape;
  const T* weight;          // (C,) or null
  const T* bias;            // (C,) or null
  T* running_mean;          // (C,) or null; training: updated in place; eval: read
  T* running_var;
  T* mean_out;              // (C,) the mean y was normalized with
  T* invstd_out;            // (C,)
  double eps, momentum;
  bool training, relu;
};
template <class T> void batch_norm_forward(const BnForwardLaunch<T>& a, cudaStream_t stream);

template <class T>
struct BnBackwardLaunch {
  const T* dy;
  const T* x;
  const T* y;               // relu: the forward's output, else null
  T* dx;                    // may be dy, x or y
  BnShape shape;
  const T* weight;          // (C,) or null
  const T* mean;            // (C,)
  const T* invstd;          // (C,)
  T* dweight;               // (C,)
  T* dbias;                 // (C,)
  bool training;
};
template <class T> void batch_norm_backward(const BnBackwardLaunch<T>& a, cudaStream_t stream);

// ------------------------------------------------------------------ activations
template <class T> void activation_forward(Activation op, ActivationParams p, const T* x, T* y, int64_t n,
                                           cudaStream_t stream);
template <class T> void activation_backward(Activation op, ActivationParams p, const T* dy, const T* x, T* dx,
                                            int64_t n, cudaStream_t stream);
template <class T> void math_eval(MathFunction fn, const T* x, T* y, int64_t n, cudaStream_t stream);

// Softmax cross-entropy over rows (rows, classes). A label outside [0, classes) is never
// used as an index: its row's loss (and in the backward its gradient row) is NaN.
template <class T> void softmax_xent(const T* logits, const void* labels, int label_bytes, T* probs, T* loss,
                                     int64_t rows, int64_t classes, cudaStream_t stream);
template <class T> void softmax_xent_backward(const T* probs, const void* labels, int label_bytes, T* dlogits,
                                              int64_t rows, int64_t classes, cudaStream_t stream);
// The device-side label flag: *bad_row (device memory, set to all ones by the caller)
// becomes the smallest row whose label is outside [0, classes), by atomicMin.
void find_bad_label(const void* labels, int label_bytes, int64_t rows, int64_t classes, int64_t* bad_row,
                    cudaStream_t stream);

// ------------------------------------------------------------------ PReLU, Maxout
template <class T> void prelu_forward(const PreluArgs<T>& a, cudaStream_t stream);
template <class T> void prelu_backward(const PreluArgs<T>& a, T* dweight, cudaStream_t stream);
template <class T> void maxout_forward(const MaxoutArgs<T>& a, cudaStream_t stream);
template <class T> void maxout_backward(const MaxoutArgs<T>& a, cudaStream_t stream);

// ------------------------------------------------------------------ dropout
// The same mask rule as the CPU (fastnn/dropout_math.h): bit-identical masks.
template <class T> void dropout(const DropoutArgs<T>& a, cudaStream_t stream);

// ------------------------------------------------------------------ optimizers
// One step over a group, multi-tensor: launches of up to a few dozen tensors each, the
// pointer and size tables in the kernel's arguments (so a CUDA graph captures them).
// Per-parameter scalars come from `coef_host` (values copied into the arguments) or,
// where given, from `coef_device` (count float64 values in device memory, read when the
// kernel runs: a captured graph replayed after the caller updates them sees the new
// step). With `finite` (a device byte), a scan first clears it if any gradient holds
// inf or NaN, and the update writes nothing unless it is 1.
template <class T>
struct OptimLaunch {
  OptimArgs<T> args;                        // threads, has_state and coef unused here
  const double* coef_host[kOptimScalars];   // (count,) on the host, or null
  const double* coef_device[kOptimScalars]; // (count,) on the device, or null
  const unsigned char* has_state;           // (count,) on the host (SGD)
  unsigned char* finite;                    // device byte, or null: no check
  bool scan;                                // clear *finite if a gradient is not finite
};
template <class T> void optim_step(const OptimLaunch<T>& a, cudaStream_t stream);
// *finite = 0 if any element of the arrays is inf or NaN (left as it is otherwise).
template <class T> void all_finite(const T* const* arrays, const int64_t* sizes, int64_t count,
                                   unsigned char* finite, cudaStream_t stream);

// ------------------------------------------------------------------ spatial (NCHW windows)
// The CPU kernels' results (ops/spatial.h), bit for bit: one thread per output element,
// each sum (col2im, pooling, a gradient element) made in float64 in the CPU's order.
template <class T> void im2col(const T* x, T* cols, const Window2d& g, cudaStream_t stream);
template <class T> void col2im(const T* cols, T* dx, const Window2d& g, cudaStream_t stream);
template <class T> void bias_output(const T* product, const T* bias, T* y, const BnShape& s, cudaStream_t stream);
template <class T> void bias_output_backward(const T* dy, T* dproduct, T* dbias, const BnShape& s,
                                             cudaStream_t stream);
template <class T> void max_pool(const T* x, T* y, void* index, int index_bytes, const Window2d& g,
                                 cudaStream_t stream);
template <class T> void max_pool_backward(const T* dy, const void* index, int index_bytes, T* dx,
                                          const Window2d& g, cudaStream_t stream);
template <class T> void avg_pool(const T* x, T* y, const Window2d& g, cudaStream_t stream);
template <class T> void avg_pool_backward(const T* dy, T* dx, const Window2d& g, cudaStream_t stream);

// ------------------------------------------------------------------ memory floor
// One pass over float32 arrays of n elements: s = sum of the reads; inplace += s;
// writes = s. A read-only pass stores nothing but keeps its loads.
void stream_pass(const float* const* reads, int64_t r, float* const* writes, int64_t w, float* const* inplace,
                 int64_t k, int64_t n, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastnn

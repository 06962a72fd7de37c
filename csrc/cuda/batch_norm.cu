// Batch norm on the GPU, NCHW and NHWC, fused ReLU included. The formulas are the CPU's
// (fastnn/bn_math.h); this file only walks memory:
//  forward, training: shifted sums per piece (common.cuh) -> per channel, Chan's merge
//    of the pieces in order, the running statistics updated in place (on the device, no
//    host sync) and the constants of the output pass -> y.
//  forward, eval: the constants from the running statistics -> y.
//  backward: sum(dy), sum(dy * (x - m0)), sum(x - m0) per piece in one pass -> per
//    channel, dweight, dbias and the constants of dx -> dx.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/workspace.cuh"
#include "fastnn/bn_math.h"

namespace fastnn {
namespace cuda {
namespace {

template <class T> __device__ __forceinline__ double weight_at(const T* w, int64_t c) { return w ? double(w[c]) : 1.0; }
template <class T> __device__ __forceinline__ double bias_at(const T* b, int64_t c) { return b ? double(b[c]) : 0.0; }

// The first value of channel c: the shift of its sums (fastnn/bn_math.h).
template <class T> __device__ __forceinline__ double channel_shift(const T* x, BnShape s, int64_t c) {
  return double(x[c * s.inner]);
}

// Forward statistics of a piece: sum(x - shift) and sum((x - shift)^2) in float64.
template <class T>
struct StatsOp {
  struct Acc {
    double s1, s2;
  };
  using Part = ChunkStats;
  const T* x;
  BnShape s;
  __device__ static void add(Acc& a, const Acc& b) {
    a.s1 += b.s1;
    a.s2 += b.s2;
  }
  __device__ void load(Acc& a, int64_t i, int64_t c) const {
    const double d = double(x[i]) - channel_shift(x, s, c);
    a.s1 += d;
    a.s2 += d * d;
  }
  __device__ ChunkStats piece(const Acc& a, int64_t, double n) const { return chunk_from_shifted_sums(n, a.s1, a.s2); }
};

// Per channel: merge the pieces in order, write the statistics (and the running ones),
// and the constants of the output pass.
template <class T>
__global__ void forward_finish(BnForwardLaunch<T> a, Pieces g, const ChunkStats* parts, NormalizeParams<T>* params) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.shape.channels) return;
  ChunkStats st = parts[c * g.count];
  for (int64_t j = 1; j < g.count; ++j) chan_merge(st, parts[c * g.count + j]);
  const double mean = channel_shift(a.x, a.shape, c) + st.shifted_mean;
  const double var = st.m2 / st.n;
  const double invstd = bn_invstd(var, a.eps);
  if (a.running_mean) bn_update_running(a.running_mean[c], a.running_var[c], mean, var, st.n, a.momentum);
  a.mean_out[c] = T(mean);
  a.invstd_out[c] = T(invstd);
  params[c] = normalize_params<T>(mean, invstd, weight_at(a.weight, c), bias_at(a.bias, c));
}

template <class T>
__global__ void eval_params(BnForwardLaunch<T> a, NormalizeParams<T>* params) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.shape.channels) return;
  const double mean = double(a.running_mean[c]);
  const double invstd = bn_invstd(double(a.running_var[c]), a.eps);
  a.mean_out[c] = T(mean);
  a.invstd_out[c] = T(invstd);
  params[c] = normalize_params<T>(mean, invstd, weight_at(a.weight, c), bias_at(a.bias, c));
}

// y = bn_normalize(x) (then the ReLU) with the constants of each element's channel.
template <class T, bool kRelu, bool kWide>
__global__ void __launch_bounds__(kThreads) normalize(const T* x, T* y, int64_t n, ChannelOf ch,
                                                     const NormalizeParams<T>* params, bool vec) {
  constexpr int N = Pack<T>::N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, t0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vec ? n / N : 0;
  for (int64_t v = t0; v < packs; v += stride) {  // vec: one channel per pack (NCHW), or N channels in a row (NHWC)
    Pack<T> p = reinterpret_cast<const Pack<T>*>(x)[v];
    const int64_t c0 = ch.template operator()<kWide>(v * N);
    for (int k = 0; k < N; ++k) {
      const NormalizeParams<T> q = params[ch.inner == 1 ? c0 + k : c0];
      const T z = bn_normalize(p.v[k], q);
      p.v[k] = kRelu ? bn_relu(z) : z;
    }
    reinterpret_cast<Pack<T>*>(y)[v] = p;
  }
  for (int64_t i = packs * N + t0; i < n; i += stride) {
    const T z = bn_normalize(x[i], params[ch.template operator()<kWide>(i)]);
    y[i] = kRelu ? bn_relu(z) : z;
  }
}

// Packs of N elements share a channel (NCHW, inner % N == 0) or hold N consecutive
// channels (NHWC, C % N == 0); with the pointers 16-byte aligned.
template <class T>
bool packs_fit(BnShape s, std::initializer_list<const void*> ptrs) {
  constexpr int N = Pack<T>::N;
  if (s.inner == 1 ? s.channels % N != 0 : s.inner % N != 0) return false;
  for (const void* p : ptrs)
    if (p && !aligned16(p)) return false;
  return true;
}

template <class T>
void launch_normalize(const BnForwardLaunch<T>& a, const NormalizeParams<T>* params, cudaStream_t stream) {
  const int64_t n = a.shape.outer * a.shape.channels * a.shape.inner;
  if (n == 0) return;
  const ChannelOf ch(a.shape);
  const bool vec = packs_fit<T>(a.shape, {a.x, a.y});
  const unsigned blocks = blocks_for(vec ? n / Pack<T>::N : n);
  const bool wide = n >= kNarrowLimit || a.shape.channels >= kNarrowLimit;
  if (a.relu)
    (wide ? normalize<T, true, true> : normalize<T, true, false>)<<<blocks, kThreads, 0, stream>>>(
        a.x, a.y, n, ch, params, vec);
  else
    (wide ? normalize<T, false, true> : normalize<T, false, false>)<<<blocks, kThreads, 0, stream>>>(
        a.x, a.y, n, ch, params, vec);
}

unsigned channel_blocks(int64_t C) { return unsigned((C + kThreads - 1) / kThreads); }

// ------------------------------------------------------------------ backward

// g = dy, or with the ReLU dy where the forward's y > 0.
template <class T> __device__ __forceinline__ T grad_at(const T* dy, const T* y, int64_t i) {
  return y ? bn_relu_grad(dy[i], y[i]) : dy[i];
}

template <class T>
struct BackwardOp {
  struct Acc {
    double dy, dy_xc, xc;
  };
  using Part = BackwardSums;
  const T *dy, *x, *y, *mean;
  __device__ static void add(Acc& a, const Acc& b) {
    a.dy += b.dy;
    a.dy_xc += b.dy_xc;
    a.xc += b.xc;
  }
  __device__ void load(Acc& a, int64_t i, int64_t c) const {
    const double g = double(grad_at(dy, y, i));
    const double xc = double(x[i]) - double(mean[c]);
    a.dy += g;
    a.dy_xc += g * xc;
    a.xc += xc;
  }
  __device__ BackwardSums piece(const Acc& a, int64_t, double) const { return {a.dy, a.dy_xc, a.xc}; }
};

// Per channel: the pieces' sums added in order, then dweight, dbias and the constants
// of dx (training: fastnn/bn_math.h's backward_train_params; eval: dx = g * w * invstd).
template <class T>
__global__ void backward_finish(BnBackwardLaunch<T> a, Pieces g, const BackwardSums* parts,
                                BackwardParams<T>* params) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.shape.channels) return;
  if (g.count == 0) {
    a.dweight[c] = T(0);
    a.dbias[c] = T(0);
    return;
  }
  BackwardSums s = {0, 0, 0};
  for (int64_t j = 0; j < g.count; ++j) {
    const BackwardSums& p = parts[c * g.count + j];
    s.sum_dy += p.sum_dy;
    s.sum_dy_xc += p.sum_dy_xc;
    s.sum_xc += p.sum_xc;
  }
  const double invstd = double(a.invstd[c]), w = weight_at(a.weight, c);
  double dweight, dbias;
  if (a.training) {
    const double m = double(a.shape.outer) * double(a.shape.inner);
    params[c] = backward_train_params<T>(s, m, double(a.mean[c]), invstd, w, &dweight, &dbias);
  } else {
    dbias = s.sum_dy;
    dweight = s.sum_dy_xc * invstd;
    BackwardParams<T> p{};
    p.c_dy = T(w * invstd);
    params[c] = p;
  }
  a.dweight[c] = T(dweight);
  a.dbias[c] = T(dbias);
}

template <class T, bool kTraining, bool kWide>
__global__ void __launch_bounds__(kThreads) backward_dx(BnBackwardLaunch<T> a, int64_t n, ChannelOf ch,
                                                        const BackwardParams<T>* params) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const BackwardParams<T> p = params[ch.template operator()<kWide>(i)];
    const T g = grad_at(a.dy, a.y, i);
    a.dx[i] = kTraining ? bn_backward_dx(g, a.x[i], p) : g * p.c_dy;  // after the loads: dx may alias them
  }
}

}  // namespace

template <class T>
void batch_norm_forward(const BnForwardLaunch<T>& a, cudaStream_t stream) {
  const int64_t C = a.shape.channels;
  if (C == 0) return;
  Workspace ws(stream);
  NormalizeParams<T>* params;
  ws.reserve(params, C);
  if (a.training) {  // the checks guarantee more than one value per channel
    const Pieces g(a.shape);
    ChunkStats* parts;
    ws.reserve(parts, C * g.count);
    ws.allocate();
    channel_pieces<<<unsigned(g.blocks()), kThreads, 0, stream>>>(StatsOp<T>{a.x, a.shape}, g, parts);
    forward_finish<<<channel_blocks(C), kThreads, 0, stream>>>(a, g, parts, params);
  } else {
    ws.allocate();
    eval_params<<<channel_blocks(C), kThreads, 0, stream>>>(a, params);
  }
  launch_normalize(a, params, stream);
  check(cudaGetLastError(), "batch_norm_forward");
}

template <class T>
void batch_norm_backward(const BnBackwardLaunch<T>& a, cudaStream_t stream) {
  const int64_t C = a.shape.channels, n = a.shape.outer * C * a.shape.inner;
  if (C == 0) return;
  Workspace ws(stream);
  Pieces g(a.shape);
  if (n == 0) g.count = 0;  // no values: dweight = dbias = 0, as on the CPU
  BackwardParams<T>* params;
  BackwardSums* parts;
  ws.reserve(params, C);
  ws.reserve(parts, C * g.count);
  ws.allocate();
  if (n)
    channel_pieces<<<unsigned(g.blocks()), kThreads, 0, stream>>>(BackwardOp<T>{a.dy, a.x, a.y, a.mean}, g, parts);
  backward_finish<<<channel_blocks(C), kThreads, 0, stream>>>(a, g, parts, params);
  if (n) {
    const ChannelOf ch(a.shape);
    const bool wide = n >= kNarrowLimit || C >= kNarrowLimit;
    const unsigned blocks = blocks_for(n);
    if (a.training)
      (wide ? backward_dx<T, true, true> : backward_dx<T, true, false>)<<<blocks, kThreads, 0, stream>>>(a, n, ch, params);
    else
      (wide ? backward_dx<T, false, true> : backward_dx<T, false, false>)<<<blocks, kThreads, 0, stream>>>(a, n, ch, params);
  }
  check(cudaGetLastError(), "batch_norm_backward");
}

template void batch_norm_forward<float>(const BnForwardLaunch<float>&, cudaStream_t);
template void batch_norm_forward<double>(const BnForwardLaunch<double>&, cudaStream_t);
template void batch_norm_backward<float>(const BnBackwardLaunch<float>&, cudaStream_t);
template void batch_norm_backward<double>(const BnBackwardLaunch<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace fastnn

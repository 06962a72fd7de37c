// What the CUDA kernels share: launch geometry, 16-byte vector access, fast division
// for channel indices, fixed-order block reductions, and the per-channel reduction
// that batch norm and PReLU build on. Compiled by nvcc only.
//
// Bits never depend on the device: elementwise kernels compute each element alone, and
// every reduction is cut into pieces fixed by the shape (never by the number of SMs),
// summed inside a piece by a fixed tree and merged across pieces in a fixed order.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "ops/launch.h"

namespace fastnn {
namespace cuda {

constexpr int kThreads = 256;          // threads per block of the elementwise kernels
constexpr int64_t kMaxBlocks = 8192;   // grid-stride beyond: enough to fill any GPU

// Blocks for `work` items, kThreads per block, capped (the kernels stride over the rest).
inline unsigned blocks_for(int64_t work) {
  const int64_t b = (work + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : b > kMaxBlocks ? kMaxBlocks : b);
}

// 16 bytes of T: 4 floats or 2 doubles, one load or store instruction.
template <class T>
struct alignas(16) Pack {
  static constexpr int N = 16 / int(sizeof(T));
  T v[N];
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// n / d and n % d for 0 <= n < 2**31 and 1 <= d < 2**31, by a multiply and a shift
// (Granlund & Montgomery): a 64-bit division costs ~20x more in an elementwise kernel.
struct FastDivmod {
  uint32_t d, m, s;
  FastDivmod() = default;
  explicit FastDivmod(uint32_t divisor) : d(divisor), m(0), s(0) {
    while ((uint64_t(1) << s) < divisor) ++s;
    m = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << s) - divisor)) / divisor + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// The channel of flat element i of x viewed as (outer, C, inner): (i / inner) % C, or
// i % C when inner == 1. kWide: i may be 2**31 or more (plain 64-bit division).
struct ChannelOf {
  int64_t inner, C;
  FastDivmod by_inner, by_C;
  explicit ChannelOf(BnShape s)
      : inner(s.inner), C(s.channels), by_inner(uint32_t(s.inner < (int64_t(1) << 31) ? s.inner : 1)),
        by_C(uint32_t(s.channels < (int64_t(1) << 31) ? s.channels : 1)) {}
  template <bool kWide>
  __device__ __forceinline__ int64_t operator()(int64_t i) const {
    if (kWide) return (inner == 1 ? i : i / inner) % C;
    const uint32_t p = inner == 1 ? uint32_t(i) : by_inner.div(uint32_t(i));
    return int64_t(p - by_C.div(p) * uint32_t(C));
  }
};
// Elements beyond this need ChannelOf<true>.
constexpr int64_t kNarrowLimit = int64_t(1) << 31;

// Sums of a block's per-thread values in shared memory, by a fixed tree; `add(a, b)`
// adds b into a. The result is in sh[0] for every thread after the call.
template <class Acc, class Add>
__device__ __forceinline__ void block_tree_sum(Acc* sh, int t, int n, Add add) {
  __syncthreads();
  for (int s = n / 2; s > 0; s /= 2) {
    if (t < s) add(sh[t], sh[t + s]);
    __syncthreads();
  }
}

// -------------------------------------------------------- per-channel reductions
// x viewed as (outer, C, inner). A channel's m = outer * inner values are cut into
// pieces fixed by the shape:
//  planes (inner > 1): a piece is up to kPieceValues values, whole planes (n) of the
//    channel when a plane is short, else a run of one plane;
//  rows (inner == 1): a piece is kPieceRows rows of a tile of 32 channels.
// One block per piece (and tile) sums its values by a fixed tree into parts[c * P + j];
// a finish kernel then merges a channel's P pieces in order.
constexpr int64_t kPieceValues = 8192;
constexpr int64_t kPieceRows = 256;
constexpr int kTile = 32;       // rows layout: channels per block (a warp's coalesced read)
constexpr int kTileRows = 8;    // rows layout: row phases per block

struct Pieces {
  BnShape s;
  bool rows;
  int64_t per_plane, planes_per_piece, count;  // planes: pieces per plane, planes per piece; P
  explicit Pieces(BnShape shape) : s(shape), rows(shape.inner == 1), per_plane(1), planes_per_piece(1) {
    if (rows) {
      count = (s.outer + kPieceRows - 1) / kPieceRows;
    } else if (s.inner >= kPieceValues) {
      per_plane = (s.inner + kPieceValues - 1) / kPieceValues;
      count = s.outer * per_plane;
    } else {
      planes_per_piece = kPieceValues / s.inner;
      count = (s.outer + planes_per_piece - 1) / planes_per_piece;
    }
  }
  int64_t blocks() const { return rows ? count * ((s.channels + kTile - 1) / kTile) : count * s.channels; }
  // Values in piece j of a channel.
  __host__ __device__ int64_t values(int64_t j) const {
    if (rows) return (j + 1) * kPieceRows <= s.outer ? kPieceRows : s.outer - j * kPieceRows;
    if (per_plane > 1) {
      const int64_t k = j % per_plane;
      return k + 1 < per_plane ? kPieceValues : s.inner - k * kPieceValues;
    }
    const int64_t n0 = j * planes_per_piece;
    return ((n0 + planes_per_piece <= s.outer) ? planes_per_piece : s.outer - n0) * s.inner;
  }
};

// Op: Acc (plain struct of doubles, zero-initialized by Acc{}), Op::add(Acc&, const Acc&),
// op.load(Acc&, int64_t element, int64_t channel) adding one element's contribution
// (and writing an output element if the op wants: each element is visited once), and
// Part op.piece(const Acc&, int64_t channel, double values) giving what parts holds.
template <class Op>
__global__ void __launch_bounds__(kThreads) channel_pieces(Op op, Pieces g, typename Op::Part* parts) {
  using Acc = typename Op::Acc;
  __shared__ Acc sh[kThreads];
  const int t = threadIdx.x;
  Acc acc{};
  int64_t c, j;
  if (g.rows) {  // block: tile of kTile channels x kTileRows row phases
    const int64_t tiles = (g.s.channels + kTile - 1) / kTile;
    j = blockIdx.x / tiles;
    const int lane = t % kTile, phase = t / kTile;
    c = (blockIdx.x % tiles) * kTile + lane;
    if (c < g.s.channels) {
      const int64_t r1 = j * kPieceRows + g.values(j);
      for (int64_t r = j * kPieceRows + phase; r < r1; r += kTileRows) op.load(acc, r * g.s.channels + c, c);
    }
    sh[t] = acc;
    __syncthreads();
    // the row phases of each column, by a fixed tree over phase
    for (int s = kTileRows / 2; s > 0; s /= 2) {
      if (phase < s) Op::add(sh[t], sh[t + s * kTile]);
      __syncthreads();
    }
    if (phase == 0 && c < g.s.channels) parts[c * g.count + j] = op.piece(sh[t], c, double(g.values(j)));
    return;
  }
  c = blockIdx.x / g.count;
  j = blockIdx.x % g.count;
  const int64_t C = g.s.channels, S = g.s.inner;
  int64_t n0, s0, width, len;
  if (g.per_plane > 1) {
    n0 = j / g.per_plane;
    s0 = (j % g.per_plane) * kPieceValues;
    len = g.values(j);
    width = len;
  } else {
    n0 = j * g.planes_per_piece;
    s0 = 0;
    width = S;
    len = g.values(j);
  }
  // value k of the piece (k < kPieceValues): plane n0 + k / width, position s0 + k % width
  const uint32_t w = uint32_t(width);
  for (int64_t k = t; k < len; k += kThreads) {
    const uint32_t q = uint32_t(k) / w, r = uint32_t(k) - q * w;
    op.load(acc, ((n0 + q) * C + c) * S + s0 + r, c);
  }
  sh[t] = acc;
  block_tree_sum(sh, t, kThreads, [](Acc& a, const Acc& b) { Op::add(a, b); });
  if (t == 0) parts[c * g.count + j] = op.piece(sh[0], c, double(len));
}

}  // namespace cuda
}  // namespace fastnn

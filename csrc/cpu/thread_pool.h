// fastnn's own worker threads (compiled once, outside the per-instruction-set code).
//
// Why not OpenMP: after a parallel region, OpenMP's workers spin for a long time (libgomp:
// up to ~300 ms by default), and a training step alternates fastnn kernels with NumPy's
// BLAS, whose threads then wait for a core: on 2 cores a step got 10-100x slower. These
// workers spin briefly, yielding the core to any other runnable thread, then sleep.
#pragma once
#include <stdint.h>

namespace fastnn {
namespace cpu {

// fn(ctx, block, worker) for every block in [0, blocks), on at most `team` threads, the
// caller included; `worker` < team names the thread running it (for scratch space). Which
// thread runs which block depends on timing: a block's result must not. Returns after every
// block ran. Runs everything on the calling thread when team <= 1, when called from inside a
// block, or while another thread's region holds the pool.
void run_blocks(int64_t blocks, int team, void (*fn)(void* ctx, int64_t block, int worker), void* ctx);

// Microseconds a worker keeps looking for the next region before it sleeps.
int64_t spin_microseconds();
void set_spin_microseconds(int64_t us);  // us >= 0; throws std::invalid_argument

}  // namespace cpu
}  // namespace fastnn

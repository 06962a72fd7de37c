// fastnn's worker threads: see thread_pool.h for why they exist.
//
// One region runs at a time. The caller opens it by publishing the job and bumping
// `generation` to an odd value; every participant (the caller is worker 0) claims blocks
// from a shared counter until none is left, so a worker that wakes late costs nothing:
// the caller runs its block instead. The caller then closes the region (generation even)
// and waits for the workers still registered in `active` to leave before the job can be
// replaced. After a region a worker looks for the next one for spin_microseconds(),
// yielding its core to any other runnable thread on each try, then sleeps on a condition
// variable.
//
// The pool is never destroyed (a daemon thread may be inside a kernel while the process
// exits) and a forked child starts a fresh one on first use: the parent's workers do not
// exist there.
#include "cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FASTNN_PAUSE() _mm_pause()
#else
#define FASTNN_PAUSE() ((void)0)
#endif

namespace fastnn {
namespace cpu {
namespace {

using Fn = void (*)(void*, int64_t, int);

std::atomic<int64_t> g_spin_us{50};

// A short busy wait, then yielding the core on every try.
inline void pause_or_yield(int tries) {
  if (tries < 64) FASTNN_PAUSE();
  else sched_yield();
}

struct Pool {
  std::atomic<bool> busy{false};        // a region is running (or being set up)
  std::atomic<uint64_t> generation{0};  // odd while a region is open
  std::atomic<int> active{0};           // workers inside the open region's claim loop
  std::atomic<int> sleepers{0};
  std::mutex sleep_mutex;
  std::condition_variable wake;
  int workers = 0;  // threads started (worker 1..workers); only the busy holder changes it

  // The open region's job (written only while no worker is registered in `active`).
  std::atomic<Fn> fn{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<int64_t> blocks{0};
  std::atomic<int> team{0};
  std::atomic<int64_t> next{0};  // the next unclaimed block
  std::atomic<int64_t> done{0};  // blocks finished

  void claim_blocks(int worker) {
    const Fn f = fn.load(std::memory_order_relaxed);
    void* const c = ctx.load(std::memory_order_relaxed);
    const int64_t n = blocks.load(std::memory_order_relaxed);
    for (int64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      f(c, b, worker);
      done.fetch_add(1, std::memory_order_release);
    }
  }

  // An open generation other than `seen`: spin (yielding) for a while, then sleep.
  uint64_t wait_for_region(uint64_t seen) {
    const auto is_new = [seen](uint64_t g) { return (g & 1) && g != seen; };
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::microseconds(g_spin_us.load(std::memory_order_relaxed));
    for (int tries = 0;; ++tries) {
      const uint64_t g = generation.load(std::memory_order_acquire);
      if (is_new(g)) return g;
      if (tries < 64) {
        FASTNN_PAUSE();
      } else {
        if (std::chrono::steady_clock::now() >= deadline) break;
        sched_yield();  // whoever else wants this core gets it
      }
    }
    std::unique_lock<std::mutex> lock(sleep_mutex);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    uint64_t g;
    while (!is_new(g = generation.load(std::memory_order_seq_cst))) wake.wait(lock);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    return g;
  }

  void worker_loop(int index, uint64_t seen) {
    sigset_t all;  // signals go to the application's threads, never to these
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    for (;;) {
      const uint64_t g = wait_for_region(seen);
      seen = g;
      active.fetch_add(1, std::memory_order_seq_cst);
      // Still the region we saw? (else it closed meanwhile and its job may be replaced)
      if (generation.load(std::memory_order_seq_cst) == g &&
          index < team.load(std::memory_order_relaxed))
        claim_blocks(index);
      active.fetch_sub(1, std::memory_order_release);
    }
  }

  // Starts workers up to `count` (called by the busy holder); returns how many exist.
  int start_workers(int count) {
    while (workers < count) {
      const int index = workers + 1;
      const uint64_t seen = generation.load(std::memory_order_relaxed);
      try {
        std::thread([this, index, seen] { worker_loop(index, seen); }).detach();
      } catch (const std::system_error&) {
        break;  // no more threads to be had: run with those we have
      }
      ++workers;
    }
    return workers;
  }

  void run(int64_t n, int want, Fn f, void* c) {
    const int size = start_workers(want - 1) + 1;
    fn.store(f, std::memory_order_relaxed);
    ctx.store(c, std::memory_order_relaxed);
    blocks.store(n, std::memory_order_relaxed);
    team.store(want < size ? want : size, std::memory_order_relaxed);
    next.store(0, std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    generation.fetch_add(1, std::memory_order_seq_cst);  // open: publishes the job
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(sleep_mutex); }
      wake.notify_all();
    }
    claim_blocks(0);
    // Wait for the workers still on a block, then for those that registered in `active`
    // but may be descheduled: yielding, so that they get this core if they need it.
    for (int tries = 0; done.load(std::memory_order_acquire) < n; ++tries) pause_or_yield(tries);
    generation.fetch_add(1, std::memory_order_seq_cst);  // close
    for (int tries = 0; active.load(std::memory_order_acquire) != 0; ++tries) pause_or_yield(tries);
  }
};

std::atomic<Pool*> g_pool{nullptr};

void forget_pool_in_child() {
  // The parent's workers are not in this process; its pool may even be mid-region.
  g_pool.store(nullptr, std::memory_order_relaxed);
}

Pool* pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return p;
  static const int registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child);
  (void)registered;
  Pool* fresh = new Pool();  // never deleted: see the top of this file
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;  // another thread made one first
  return p;
}

}  // namespace

void run_blocks(int64_t blocks, int team, Fn fn, void* ctx) {
  if (blocks <= 0) return;
  if (team > blocks) team = static_cast<int>(blocks);
  Pool* p = team > 1 ? pool() : nullptr;
  if (!p || p->busy.exchange(true, std::memory_order_acquire)) {
    for (int64_t b = 0; b < blocks; ++b) fn(ctx, b, 0);
    return;
  }
  p->run(blocks, team, fn, ctx);
  p->busy.store(false, std::memory_order_release);
}

int64_t spin_microseconds() { return g_spin_us.load(std::memory_order_relaxed); }

void set_spin_microseconds(int64_t us) {
  if (us < 0) throw std::invalid_argument("spin must be >= 0 microseconds, got " + std::to_string(us));
  g_spin_us.store(us, std::memory_order_relaxed);
}

}  // namespace cpu
}  // namespace fastnn

// Picks the best instruction set the CPU (and OS) supports at import; FASTNN_SIMD
// (read by the Python package) or set_simd_level() may choose a lower one.
#include "cpu/dispatch.h"

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace fastnn {
namespace cpu {

// Each family's source defines fill_<family>(KernelTable&) once per instruction set
// (the list: csrc/families.h).
#define FASTNN_DECLARE_FILL(family, Table) void fill_##family(KernelTable& table);
#define FASTNN_CALL_FILL(family, Table) fill_##family(table);
// level::fill_all(table) fills every family with that level's kernels.
#define FASTNN_DEFINE_LEVEL(level)                                          \
  namespace level {                                                         \
  FASTNN_FAMILIES(FASTNN_DECLARE_FILL)                                      \
  void fill_all(KernelTable& table) { FASTNN_FAMILIES(FASTNN_CALL_FILL) }   \
  }
FASTNN_DEFINE_LEVEL(baseline)
#ifdef FASTNN_HAVE_AVX2
FASTNN_DEFINE_LEVEL(avx2)
#endif
#ifdef FASTNN_HAVE_AVX512
FASTNN_DEFINE_LEVEL(avx512)
#endif
#undef FASTNN_DEFINE_LEVEL
#undef FASTNN_CALL_FILL
#undef FASTNN_DECLARE_FILL

namespace {

struct Level {
  const char* name;
  bool supported;
  KernelTable table;
};

Level make_level(const char* name, bool supported, void (*fill_all)(KernelTable&)) {
  Level l{name, supported, {}};
  l.table.level = name;
  if (supported) fill_all(l.table);  // a level's code may not run on this CPU
  return l;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("bmi2");
}
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#endif

// Best first.
const std::vector<Level>& levels() {
  static const std::vector<Level> all = [] {
    std::vector<Level> v;
#ifdef FASTNN_HAVE_AVX512
    v.push_back(make_level("avx512", cpu_has_avx512(), avx512::fill_all));
#endif
#ifdef FASTNN_HAVE_AVX2
    v.push_back(make_level("avx2", cpu_has_avx2(), avx2::fill_all));
#endif
    v.push_back(make_level("baseline", true, baseline::fill_all));
    return v;
  }();
  return all;
}

const KernelTable* best_table() {
  for (const Level& l : levels())
    if (l.supported) return &l.table;
  return nullptr;  // unreachable: baseline is always supported
}

std::atomic<const KernelTable*> g_table{best_table()};

// OMP_NUM_THREADS if set (the variable users already set for every native library; its
// first entry), else the cores this process may run on.
int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n >= 1) return n < kMaxThreads ? int(n) : kMaxThreads;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? int(n < kMaxThreads ? n : kMaxThreads) : 1;
}

std::atomic<int> g_threads{default_threads()};

// The last-level cache's size (sysconf knows it on glibc; 32 MiB if it doesn't).
int64_t default_stream_threshold() {
  const long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return bytes > 0 ? int64_t(bytes) : int64_t(32) << 20;
}

std::atomic<int64_t> g_stream_threshold{default_stream_threshold()};

}  // namespace

const KernelTable& kernels() { return *g_table.load(std::memory_order_acquire); }

std::vector<std::string> simd_available() {
  std::vector<std::string> names;
  for (const Level& l : levels())
    if (l.supported) names.push_back(l.name);
  return names;
}

void set_simd_level(const std::string& name) {
  std::string known;
  for (const Level& l : levels()) {
    if (name == l.name) {
      if (!l.supported)
        throw std::invalid_argument("SIMD level '" + name + "' is not supported by this CPU");
      g_table.store(&l.table, std::memory_order_release);
      return;
    }
    known += (known.empty() ? "" : ", ") + std::string(l.name);
  }
  throw std::invalid_argument("unknown SIMD level '" + name + "'; this build has: " + known);
}

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw std::invalid_argument("number of threads must be in [1, " + std::to_string(kMaxThreads) +
                                "], got " + std::to_string(n));
  g_threads.store(n, std::memory_order_relaxed);
}

int64_t stream_threshold() { return g_stream_threshold.load(std::memory_order_relaxed); }

void set_stream_threshold(int64_t bytes) {
  if (bytes < 0) throw std::invalid_argument("stream threshold must be >= 0 bytes, got " + std::to_string(bytes));
  g_stream_threshold.store(bytes, std::memory_order_relaxed);
}

}  // namespace cpu
}  // namespace fastnn

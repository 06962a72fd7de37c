"""Timing, the table, the JSON and the plot of ``fastnn bench``.

Memory bandwidth on a shared VM drifts by 2-3x within minutes, so a case is timed
round-robin: after one warm-up call of each implementation, every round runs each of
them once, and the figure is the median over the rounds. An implementation that has
used up its time budget (slow NumPy at 64M takes seconds a call) sits out the
remaining rounds; it always gets at least one. fastnn, the floor and the copy run
every round.

The floor is checked in the same rounds: a plain copy of the floor's bytes (half
read, half written) runs beside it. A floor that is slower than that copy in every
round by more than NOISE, or a kernel faster than its floor in every round by more
than NOISE, is flagged: the floor loop is not the least time its traffic takes.
"""

import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn import _cpu

SLOW_MARK = "*"
FLAG_MARK = "!"
# the ratios' and the checks' basis: every round, whatever the budget
UNCAPPED = ("fastnn", "fastnn_out", "floor", "copy")
NOISE = 0.05  # how far a check's paired rounds must all lie to flag a floor
# After a PyTorch call its OpenMP workers keep spinning on the cores for milliseconds,
# and whatever runs next (the floor, fastnn) loses a core to them: a 64M floor pass
# measured 16.8 ms alone, 21.2 ms right after a torch op and 17.7 ms after a 5 ms
# wait. Each torch call is followed by such a wait, outside its timing; a busy one,
# because on a VM a core left idle comes back slow (a 20 ms sleep made the next 1M
# floor several times slower).
TORCH_SETTLE_S = 0.005


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def time_case(impls, rounds, budget_s):
    """{implementation: seconds of each timed call}."""
    times = {k: [] for k in impls}
    for k, f in impls.items():
        f()  # warm-up: first-touch page faults, caches, torch's dispatch
        _settle(k)
    for r in range(rounds):
        for k, f in impls.items():
            if r and k not in UNCAPPED and sum(times[k]) >= budget_s:
                continue
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
            _settle(k)
    return times


def _settle(key):
    if key.startswith("torch"):
        end = time.perf_counter() + TORCH_SETTLE_S
        while time.perf_counter() < end:
            pass


class Copy:
    """A plain copy of `nbytes` in all: half read from src, half written to dst."""

    def __init__(self, nbytes):
        self.src = np.ones(nbytes // 8, np.float32)
        self.dst = np.empty_like(self.src)

    def __call__(self):
        _cpu.stream_copy(self.src, self.dst)


def copy_of(floor):
    """A copy of the floor's bytes (the same traffic and footprint), or None for a
    floor that also computes."""
    return Copy(floor.bytes) if floor.work is None and floor.bytes >= 8 else None


def beats_floor(kernel_s, floor_s, noise=NOISE):
    """Whether the kernel ran faster than its floor by more than `noise` in every round
    (round by round: the pairs ran back to back, through the same drift)."""
    return bool(kernel_s) and all(k < f * (1 - noise) for k, f in zip(kernel_s, floor_s))


def slower_than_copy(floor_s, copy_s, noise=NOISE):
    """Whether the floor ran slower than a copy of its bytes by more than `noise` in
    every round."""
    return bool(copy_s) and all(f > c * (1 + noise) for f, c in zip(floor_s, copy_s))


def _l3_bytes():
    sizes = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in (d for d in os.listdir(base) if d.startswith("index")):
            with open(f"{base}/{index}/level") as f:
                level = f.read().strip()
            with open(f"{base}/{index}/size") as f:
                text = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            sizes[level] = int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        return None
    return sizes.get("3")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(torch, threads):
    info = fastnn.info()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "l3_bytes": _l3_bytes(),
        "simd": info["simd"],
        "simd_available": info["simd_available"],
        "threads": threads,
        "versions": {"fastnn": fastnn.__version__, "numpy": np.__version__,
                     "torch": torch.__version__ if torch else None,
                     "python": platform.python_version()},
    }


def result_row(case, built, times):
    """One case's figures from its timed calls: every implementation's median ms (of
    one iteration) and calls, the ratios (from fastnn's default call), the floor checks."""
    ms = {k: statistics.median(v) * 1e3 / built.inner for k, v in times.items() if k != "copy"}
    fast = ms["fastnn"]
    kernel_s = [min(pair) for pair in zip(times["fastnn"], times.get("fastnn_out", times["fastnn"]))]
    flags = []
    if beats_floor(kernel_s, times["floor"]):
        flags.append("beats_floor")
    if "copy" in times and slower_than_copy(times["floor"], times["copy"]):
        flags.append("floor_slower_than_copy")
    row = {
        "family": case.family, "op": case.op, "layout": case.layout, "size": case.size,
        "elements": case.n, "dtype": case.dtype, "bytes": built.floor.bytes,
        "floor_pattern": built.floor.pattern, "iterations_per_call": built.inner,
        "ms": ms, "calls": {k: len(v) for k, v in times.items() if k != "copy"},
        "labels": {k: label for k, label in case.extras if k in ms},
        "speedup_numpy": ms["numpy"] / fast,
        "speedup_torch": ms["torch"] / fast if "torch" in ms else None,
        "speedup_torch_out": (ms["torch_out"] / ms["fastnn_out"]
                              if "torch_out" in ms and "fastnn_out" in ms else None),
        "gb_per_s": built.floor.bytes / (fast * 1e-3) / 1e9 if built.floor.work is None else None,
        "vs_floor": fast / ms["floor"],
        "copy_ms": statistics.median(times["copy"]) * 1e3 if "copy" in times else None,
        "flags": flags,
    }
    row["floor_vs_copy"] = ms["floor"] / row["copy_ms"] if row["copy_ms"] else None
    if built.overhead:
        row["overhead_us"] = {k: (t - ms["floor"]) * 1e3 for k, t in ms.items() if k != "floor"}
    return row


class Progress:
    """A progress bar on stderr (one line per case when stderr is not a terminal)."""

    def __init__(self, total):
        self.total, self.done, self.stream = total, 0, sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()

    def show(self, label):
        elapsed = time.perf_counter() - self.start
        if self.tty:
            width = 30
            full = width * self.done // max(1, self.total)
            bar = "#" * full + "-" * (width - full)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {label[:40]:<40}")
        else:
            self.stream.write(f"[{self.done + 1}/{self.total} {elapsed:.0f}s] {label}\n")
        self.stream.flush()

    def step(self):
        self.done += 1

    def close(self):
        if self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(f"{self.total} cases in {time.perf_counter() - self.start:.0f} s\n")
        self.stream.flush()


def run(cases, *, rounds, budget_s, torch):
    rows = []
    bar = Progress(len(cases))
    for case in cases:
        bar.show(case.name)
        built = case.build(torch)
        if built.timed is not None:  # a job of its own gives medians: each stands for its rounds
            times = {k: [t] * calls for k, (t, calls) in built.timed(rounds, budget_s).items()}
        else:
            impls = dict(built.impls)
            copy = copy_of(built.floor)
            if copy is not None:
                impls["copy"] = copy
            times = time_case(impls, rounds, budget_s)
            del impls, copy
        rows.append(result_row(case, built, times))
        del built
        gc.collect()  # the next case's arrays reuse this one's memory
        bar.step()
    bar.close()
    return rows


def _ms(row, key, rounds):
    if key not in row["ms"]:
        return "-"
    t = row["ms"][key]
    text = f"{t:.3f}" if t < 1 else f"{t:.2f}" if t < 10 else f"{t:.1f}"
    return text + (SLOW_MARK if row["calls"][key] < rounds else "")


def header(m):
    l3 = f"{m['l3_bytes'] / 2**20:.1f} MiB L3" if m["l3_bytes"] else "L3 unknown"
    v = m["versions"]
    return (f"{m['cpu']} ({m['cores']} cores, {l3}), {m['simd']} kernels, {m['threads']} threads; "
            f"fastnn {v['fastnn']}, NumPy {v['numpy']}, PyTorch {v['torch'] or 'not installed'}; "
            f"{m['date']}")


OVERHEAD_NAMES = {"fastnn": "fastnn", "torch": "PyTorch", "torch_foreach": "PyTorch foreach"}


def _overhead(row):
    if "overhead_us" not in row:
        return []
    return ["per-step overhead over the floor: " + ", ".join(
        f"{name} {row['overhead_us'][k]:.0f} us" for k, name in OVERHEAD_NAMES.items()
        if k in row["overhead_us"])]


def _ratio(value, flagged):
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" {FLAG_MARK}" if flagged else "")


def table(rows, m, rounds, budget_s):
    """Markdown: one row per case, then the notes the figures need."""
    lines = [header(m), "",
             "| op | layout | size | fastnn ms | out= ms | NumPy ms | PyTorch ms | PyTorch out= ms "
             "| floor ms | vs NumPy | vs PyTorch | GB/s | / floor | floor / copy | other |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        other = "; ".join([f"{label} {_ms(r, k, rounds)}" for k, label in r["labels"].items()]
                          + _overhead(r))
        torch_x = f"{r['speedup_torch']:.2f}x" if r["speedup_torch"] else "-"
        gb = f"{r['gb_per_s']:.1f}" if r["gb_per_s"] is not None else "-"
        lines.append(
            f"| {r['op']} | {r['layout']} | {r['size']} | {_ms(r, 'fastnn', rounds)} "
            f"| {_ms(r, 'fastnn_out', rounds)} | {_ms(r, 'numpy', rounds)} | {_ms(r, 'torch', rounds)} "
            f"| {_ms(r, 'torch_out', rounds)} | {_ms(r, 'floor', rounds)} | {r['speedup_numpy']:.1f}x "
            f"| {torch_x} | {gb} | {_ratio(r['vs_floor'], 'beats_floor' in r['flags'])} "
            f"| {_ratio(r['floor_vs_copy'], 'floor_slower_than_copy' in r['flags'])} | {other} |")
    slow = sum(1 for r in rows for c in r["calls"].values() if c < rounds)
    lines += ["", f"Median of {rounds} round-robin rounds after a warm-up call"
              + (f"; {SLOW_MARK} fewer rounds: the implementation used up its {budget_s:g} s budget "
                 f"({slow} cells)" if slow else "") + "."]
    looped = [f"{r['op']} {r['iterations_per_call']}" for r in rows if r["iterations_per_call"] > 1]
    if looped:
        lines.append(f"Cases that run several iterations a call show the time of one ({', '.join(looped)}); "
                     "a loop case's floor is the matmuls alone plus the kernel's traffic.")
    beats = [r for r in rows if "beats_floor" in r["flags"]]
    slow_floors = [r for r in rows if "floor_slower_than_copy" in r["flags"]]
    lines.append(f"Floor checks: {FLAG_MARK} in / floor marks a kernel (its default or out= call) "
                 f"faster than its floor by more than {NOISE:.0%} in every round ({len(beats)} rows); "
                 f"{FLAG_MARK} in floor / copy a "
                 f"floor slower than a plain copy of the same bytes by more than {NOISE:.0%} in every "
                 f"round ({len(slow_floors)} rows). Either means the floor loop is not the least time "
                 "its traffic takes.")
    return "\n".join(lines)


def write_json(path, rows, m, settings):
    with open(path, "w") as f:
        json.dump({"machine": m, "settings": settings, "cases": rows}, f, indent=1)


def plot(path, rows, m):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['op']} {r['layout']} {r['size']}" for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.22 * len(rows)))
    h = 0.4
    for shift, key, label in ((-h / 2, "speedup_numpy", "vs NumPy"), (h / 2, "speedup_torch", "vs PyTorch")):
        x = np.array([r[key] or 1.0 for r in rows])
        if any(r[key] for r in rows):
            ax.barh(y + shift, x - 1, h, left=1, label=label)  # from 1x: right faster, left slower
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first case on top, no margins
    ax.set_xlabel("speed-up of fastnn (time of the other / fastnn's), log scale")
    ax.set_title(header(m).replace("; ", "\n", 1), fontsize=7)
    ax.legend(loc="best")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

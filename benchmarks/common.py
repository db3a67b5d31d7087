"""Helpers shared by the benchmark scripts: paths, thread setting, tables, JSON output."""
from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def venv_executable(name: str) -> Path:
    """An executable next to the running Python (the venv's bin/ when run with the venv)."""
    return Path(sys.executable).parent / name


def set_torch_threads(threads: int | None) -> int:
    """Apply --torch-threads (None keeps torch's default); returns the count in force."""
    import torch
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


SETTLE = 0.3  # seconds of quiet before each timed call (interleaved_medians)


def interleaved_medians(cases: dict[Any, Callable[[], object]], repeats: int,
                        warmups: dict[Any, Callable[[], object]] | None = None) -> dict[Any, float]:
    """Median wall time per case, the cases run in turn `repeats` times.

    Interleaving spreads a slow spell of a busy machine over every case instead of one.
    Each case is warmed up first (its warm-up callable, or one untimed call). Before each timed
    call the process pauses for SETTLE seconds: the case before may leave thread pools spinning
    (torch's OpenMP threads spin-wait for up to ~200 ms after work), and a case timed inside that
    window shares the cores with them. A fast case (33 ms for 512 ONNX notes) measured right after
    a torch case came out ~20% slow that way.
    """
    for key, fn in cases.items():
        (warmups or {}).get(key, fn)()
    times: dict[Any, list[float]] = {key: [] for key in cases}
    for _ in range(repeats):
        for key, fn in cases.items():
            time.sleep(SETTLE)
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)
    return {key: statistics.median(values) for key, values in times.items()}


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def target_mark(value: float | None, goal: float, higher_is_better: bool = True) -> str:
    """'ok (>= 20x)' or 'MISS (>= 20x)' against a target; '-' when there is no value."""
    if value is None:
        return "-"
    met = value >= goal if higher_is_better else value < goal
    sign = ">=" if higher_is_better else "<"
    return f"{'ok' if met else 'MISS'} ({sign} {fmt(float(goal))})"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        # text left, numbers right
        print("  ".join(c.rjust(w) if c[:1].isdigit() or c[:1] == "-" else c.ljust(w)
                        for c, w in zip(row, widths)))
    sys.stdout.flush()


def write_json(path: str | Path | None, results: dict[str, Any]) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, load, library versions."""
    import os
    import platform
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        info["loadavg_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for module in ("numpy", "torch", "onnxruntime"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    return info


def start(torch_threads: int | None) -> dict[str, Any]:
    """Set torch's threads, then print and return the machine facts every result file records."""
    threads = set_torch_threads(torch_threads)
    info = {**machine(), "torch_threads": threads}
    print_machine(info)
    return info


def print_machine(info: dict[str, Any]) -> None:
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))

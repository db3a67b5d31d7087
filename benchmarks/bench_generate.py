"""Generation speed: mpx's backends and modes against the tutorial's loop, in one run.

What is measured (the model is always the bundled one in artifacts/, whatever its size):

(a) single stream, notes/s: the tutorial's loop (benchmarks/tutorial.py: the last 25 notes
    re-run from a zero state per note, np.delete/np.append, torch.multinomial) on the bundled
    checkpoint's NoteLSTM, so only the loop differs; then mpx eager / torchscript / onnx, each
    in stateful and window mode. `--notes` notes per run after a warm-up run, median of
    `--repeats` runs, the runners taking turns (a slow spell of a busy machine is shared).
    A run includes the primer pass (stateful) and the sampler (top-p 0.95).
(b) batched: num_outputs=64 streams in one pass, total notes/s, against the tutorial's
    per-note rate.
(c) cold start of the whole process `mpx run --backend onnx artifacts/seed.mid --notes 256`:
    wall time and peak RSS (each run in a fresh helper process that reads
    getrusage(RUSAGE_CHILDREN)), median of `--runs`, next to `python -c pass` and
    `python -c "import torch"`; and whether that process imported torch at all.
(d) --ort-sweep: single-stream (and 64-stream) onnx notes/s for intra_op_num_threads 1/2 and
    graph optimisation basic/all, on mpx's own OnnxBackend with the session swapped, so the
    choice in runtime/backends.py (onnx_session_options) rests on a measurement. One session
    exists at a time (a 2-thread session's idle pool spins and would slow the others).
(e) where one onnx stateful note's time goes: the graph call alone (onnxruntime, T = 1, state
    carried), the sampler alone (default options, the model's timing tables), and the rest of
    a generate() note (Python around them), in microseconds per note.

Run (from the repository root, with the venv):
    python benchmarks/bench_generate.py --quick                  # smoke test, ~20 s
    python benchmarks/bench_generate.py --ort-sweep --json benchmarks/results/generate.json
Torch uses its default thread count unless --torch-threads is given; on a machine whose cores
are busy, torch's spinning intra-op threads make every torch figure meaningless, so use
--torch-threads 1 there (the tables say which count was in force).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import common
import tutorial

SEED_MIDI = common.ARTIFACTS / "seed.mid"


def model_paths(directory: Path) -> dict[str, Path]:
    """A model folder as `mpx export` writes it (the bundled one: artifacts/)."""
    return {"checkpoint": directory / "model.safetensors", "torchscript": directory / "music_producter.pt",
            "onnx": directory / "music_producter.onnx"}


BATCH = 64
MODES = ("stateful", "window")
TARGETS = {"onnx_stateful_vs_tutorial": 15.0, "batched_vs_tutorial": 100.0,
           "cold_start_s": 0.5, "cold_start_rss_mb": 150.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notes", type=int, default=512, help="notes per timed run (default 512)")
    p.add_argument("--batched-notes", type=int, default=256,
                   help="notes per stream in the 64-stream runs (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure, median (default 3)")
    p.add_argument("--warmup", type=int, default=32, help="notes of the untimed warm-up run")
    p.add_argument("--runs", type=int, default=5, help="cold-start processes per command (default 5)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads for the tutorial, eager and torchscript (default: torch's)")
    p.add_argument("--ort-sweep", action="store_true", help="also sweep onnxruntime session options")
    p.add_argument("--skip-cold-start", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 256 notes, 5 repeats, 64-stream runs of 32 notes, 3 cold starts")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--model-dir", type=Path, default=common.ARTIFACTS,
                   help="folder with model.safetensors, music_producter.pt/.onnx (default: artifacts/)")
    args = p.parse_args(argv)
    if args.quick:
        args.notes, args.batched_notes, args.repeats, args.warmup, args.runs = 256, 32, 5, 8, 3
    return args


def load_primer(seq_len: int) -> np.ndarray:
    from mpx.runtime import read_notes
    return read_notes(SEED_MIDI)[-seq_len:]


def open_generators(paths: dict[str, Path]) -> dict[str, Any]:
    """Every backend on one model: eager (checkpoint), torchscript, onnx."""
    from mpx.runtime import load
    return {"eager": load(paths["checkpoint"]), "torchscript": load(paths["torchscript"]),
            "onnx": load(paths["onnx"])}


def generation_run(gen: Any, primer: np.ndarray, notes: int, mode: str = "stateful",
                   num_outputs: int = 1) -> Callable[[], object]:
    """One mpx generation with the default sampling options and a fixed seed."""
    return lambda: gen.generate(primer, notes, temperature=1.0, top_p=0.95, seed=0, mode=mode,
                                num_outputs=num_outputs)


def timed_rates(cases: dict[Any, tuple[Callable[[], object], Callable[[], object], int]],
                repeats: int) -> dict[Any, float]:
    """{key: (run, warm-up, notes made by run)} -> {key: notes/s}, cases interleaved."""
    seconds = common.interleaved_medians({k: c[0] for k, c in cases.items()}, repeats,
                                         {k: c[1] for k, c in cases.items()})
    return {k: cases[k][2] / seconds[k] for k in cases}


# -- (a) single stream -------------------------------------------------------------------------
def tutorial_case(primer: np.ndarray, args: argparse.Namespace
                  ) -> tuple[Callable[[], object], Callable[[], object], int]:
    """The tutorial's loop on the bundled checkpoint's NoteLSTM (the model mpx's eager runs)."""
    from mpx.train.checkpoint import load_model
    model, _ = load_model(model_paths(args.model_dir)["checkpoint"])
    width = len(primer)  # the spec's seq_len: the tutorial's 25 for the bundled model

    def run(n: int) -> Callable[[], object]:
        return lambda: tutorial.generate(model, primer, n, seq_length=width)
    return run(args.notes), run(args.warmup), args.notes


def bench_single(gens: dict[str, Any], primer: np.ndarray, args: argparse.Namespace
                 ) -> list[dict[str, Any]]:
    cases = {("tutorial loop", "window"): tutorial_case(primer, args)}
    for name, gen in gens.items():
        for mode in MODES:
            cases[(f"mpx {name}", mode)] = (generation_run(gen, primer, args.notes, mode),
                                            generation_run(gen, primer, args.warmup, mode),
                                            args.notes)
    rates = timed_rates(cases, args.repeats)
    reference = rates[("tutorial loop", "window")]
    rows = [{"runner": runner, "mode": mode, "notes_per_s": rate,
             "vs_tutorial": common.ratio(rate, reference)} for (runner, mode), rate in rates.items()]
    goal = TARGETS["onnx_stateful_vs_tutorial"]
    common.print_table(
        f"(a) one stream, {args.notes} notes per run (median of {args.repeats}), notes/s",
        ["runner", "mode", "notes/s", "x tutorial", "target"],
        [[r["runner"], r["mode"], r["notes_per_s"], r["vs_tutorial"],
          common.target_mark(r["vs_tutorial"], goal)
          if (r["runner"], r["mode"]) == ("mpx onnx", "stateful") else ""] for r in rows])
    return rows


# -- (b) batched -------------------------------------------------------------------------------
def bench_batched(gens: dict[str, Any], primer: np.ndarray, reference: float,
                  args: argparse.Namespace) -> list[dict[str, Any]]:
    n = args.batched_notes
    cases = {name: (generation_run(gens[name], primer, n, num_outputs=BATCH),
                    generation_run(gens[name], primer, args.warmup, num_outputs=BATCH), n * BATCH)
             for name in ("onnx", "torchscript")}
    rows = [{"runner": f"mpx {name}", "streams": BATCH, "notes_per_s": rate,
             "vs_tutorial": common.ratio(rate, reference)}
            for name, rate in timed_rates(cases, args.repeats).items()]
    goal = TARGETS["batched_vs_tutorial"]
    common.print_table(
        f"(b) {BATCH} streams (num_outputs={BATCH}), {n} notes each (median of {args.repeats}), "
        "total notes/s",
        ["runner", "streams", "notes/s", "x tutorial (1 stream)", "target"],
        [["tutorial loop", 1, reference, 1.0, ""]]
        + [[r["runner"], r["streams"], r["notes_per_s"], r["vs_tutorial"],
            common.target_mark(r["vs_tutorial"], goal)] for r in rows])
    return rows


# -- (c) cold start ----------------------------------------------------------------------------
# Runs one command and reports its wall time and peak RSS. It is a fresh process per run, so
# RUSAGE_CHILDREN holds exactly that one child. ru_maxrss is in KiB on Linux.
HELPER = r"""
import json, resource, subprocess, sys, time
cmd = json.loads(sys.argv[1])
started = time.perf_counter()
done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_s": wall, "rss_mb": rss / 1024, "rc": done.returncode,
                  "stderr": done.stderr[-2000:]}))
"""


def measure_process(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", HELPER, json.dumps(cmd)], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result['rc']}):\n{result['stderr']}")
    return result


def imports_torch(cmd: list[str], cwd: Path) -> bool:
    """Whether the command's process imports torch (from its -X importtime report)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in done.stderr.splitlines())


def bench_cold_start(args: argparse.Namespace) -> list[dict[str, Any]]:
    mpx = common.venv_executable("mpx")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as tmp:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "mpx run --backend onnx --notes 256": [
                str(mpx), "run", "--backend", "onnx", str(SEED_MIDI), "--notes", "256",
                "--out", str(Path(tmp) / "tmp.mid")],
        }
        for label, cmd in commands.items():
            measure_process(cmd, Path(tmp))  # warm the page cache: a cold disk is not the subject
            runs = [measure_process(cmd, Path(tmp)) for _ in range(args.runs)]
            rows.append({"command": label,
                         "wall_s": statistics.median(r["wall_s"] for r in runs),
                         "rss_mb": statistics.median(r["rss_mb"] for r in runs),
                         "runs": args.runs})
        rows[-1]["imports_torch"] = imports_torch(commands["mpx run --backend onnx --notes 256"], Path(tmp))
    mpx_row = rows[-1]
    common.print_table(
        f"(c) cold start, whole process (median of {args.runs}; {mpx})",
        ["command", "wall s", "peak RSS MB", "target"],
        [[r["command"], r["wall_s"], r["rss_mb"],
          "" if r is not mpx_row else
          f"{common.target_mark(r['wall_s'], TARGETS['cold_start_s'], False)} s, "
          f"{common.target_mark(r['rss_mb'], TARGETS['cold_start_rss_mb'], False)} MB"]
         for r in rows])
    print(f"mpx run imported torch: {'YES' if mpx_row['imports_torch'] else 'no'}")
    return rows


# -- (d) onnxruntime options -------------------------------------------------------------------
def onnx_generator(threads: int, level: str, onnx: Path) -> Any:
    """mpx's OnnxBackend, its session rebuilt with one option changed from mpx's choice."""
    import onnxruntime as ort
    from mpx.runtime import Generator, OnnxBackend
    from mpx.runtime.backends import onnx_session_options
    backend = OnnxBackend(onnx, threads=threads)
    opts = onnx_session_options(threads)
    opts.graph_optimization_level = ORT_LEVELS[level](ort)
    backend.session = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    return Generator(backend)


ORT_LEVELS = {
    "basic": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def mpx_onnx_default() -> tuple[int, str]:
    """The (threads, level) mpx uses: OnnxBackend's default threads, onnx_session_options' level."""
    import inspect

    import onnxruntime as ort
    from mpx.runtime import OnnxBackend
    from mpx.runtime.backends import onnx_session_options
    threads = inspect.signature(OnnxBackend).parameters["threads"].default
    level = onnx_session_options(threads).graph_optimization_level
    names = {fn(ort): name for name, fn in ORT_LEVELS.items()}
    return threads, names.get(level, str(level))


def sweep_round(threads: int, level: str, primer: np.ndarray, args: argparse.Namespace
                ) -> tuple[float, float]:
    """(1-stream, 64-stream) notes/s of one configuration, timed once each after a warm-up.

    The session lives only for this call: an idle multi-threaded session's spinning pool
    threads would otherwise take the cores from the configurations timed after it.
    """
    gen = onnx_generator(threads, level, model_paths(args.model_dir)["onnx"])
    rates = timed_rates({streams: (generation_run(gen, primer, n, num_outputs=streams),
                                   generation_run(gen, primer, args.warmup, num_outputs=streams),
                                   n * streams)
                         for streams, n in ((1, args.notes), (BATCH, args.batched_notes))}, 1)
    del gen
    gc.collect()
    return rates[1], rates[BATCH]


def bench_ort_sweep(primer: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    default = mpx_onnx_default()
    configs = [(threads, level) for threads in (1, 2) for level in ORT_LEVELS]
    rounds: dict[tuple[int, str], list[tuple[float, float]]] = {c: [] for c in configs}
    for _ in range(args.repeats):  # configurations take turns, one session at a time
        for config in configs:
            rounds[config].append(sweep_round(*config, primer, args))
    rows = [{"intra_op_threads": threads, "optimization": level,
             "one_stream_notes_per_s": statistics.median(r[0] for r in rounds[(threads, level)]),
             "batched_notes_per_s": statistics.median(r[1] for r in rounds[(threads, level)]),
             "mpx_default": (threads, level) == default}
            for threads, level in configs]
    best = max(r["one_stream_notes_per_s"] for r in rows)
    common.print_table(
        f"(d) onnxruntime session options, stateful notes/s (median of {args.repeats})",
        ["intra-op threads", "graph opt", "1 stream", f"{BATCH} streams", "1 stream vs best", ""],
        [[r["intra_op_threads"], r["optimization"], r["one_stream_notes_per_s"],
          r["batched_notes_per_s"], r["one_stream_notes_per_s"] / best,
          "<- mpx default" if r["mpx_default"] else ""] for r in rows])
    return rows


# -- (e) per-note breakdown ---------------------------------------------------------------------
def bench_breakdown(gen: Any, primer: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    from mpx.runtime import GenerationOptions, Sampler
    from mpx.runtime.backends import zero_state
    backend, calls = gen.backend, args.notes
    outputs = backend.step(primer[None], *zero_state(backend.spec, 1))
    note = primer[None, -1:]
    sampler = Sampler(GenerationOptions(seed=0), backend.spec.timing)
    last = [a[:, -1] for a in outputs[:3]]

    def graph() -> None:
        h, c = outputs[3], outputs[4]
        for _ in range(calls):
            _, _, _, h, c = backend.step(note, h, c)

    def sample() -> None:
        for _ in range(calls):
            sampler(*last)
    seconds = common.interleaved_medians({"graph": graph, "sampler": sample,
                                          "generate": generation_run(gen, primer, calls)}, args.repeats)
    per_note = {k: v / calls * 1e6 for k, v in seconds.items()}
    per_note["python"] = per_note["generate"] - per_note["graph"] - per_note["sampler"]
    common.print_table(f"(e) one onnx stateful note, microseconds (median of {args.repeats}, {calls} notes)",
                       ["graph call", "sampler", "rest (Python)", "generate() per note"],
                       [[per_note["graph"], per_note["sampler"], per_note["python"], per_note["generate"]]])
    return per_note


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.start(args.torch_threads)
    paths = model_paths(args.model_dir)
    gens = open_generators(paths)
    spec = gens["onnx"].spec
    print(f"model: {paths['onnx']}, config {spec.config}, seq_len {spec.seq_len}")
    primer = load_primer(spec.seq_len)
    results: dict[str, Any] = {"machine": info, "model": spec.config, "options": vars(args)}
    results["single"] = bench_single(gens, primer, args)
    reference = results["single"][0]["notes_per_s"]
    results["batched"] = bench_batched(gens, primer, reference, args)
    if not args.skip_cold_start:
        results["cold_start"] = bench_cold_start(args)
    if args.ort_sweep:
        results["ort_sweep"] = bench_ort_sweep(primer, args)
    results["per_note_us"] = bench_breakdown(gens["onnx"], primer, args)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()

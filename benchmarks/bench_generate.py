"""Generation speed: mpx's backends and modes against the tutorial's loop, in one run.

Graph contract v2: every call of the artifact samples the next note itself (uniforms and the
per-attribute temperature and top-p are graph inputs), so every runner below does the same
work per call; they differ in the loop around it. All runners use one model, a folder as
`mpx export` writes it (`--model-dir`, default artifacts/: model.safetensors or
best.safetensors, music_producter.pt, music_producter.onnx), with the model's default sampling.

(a) one stream, notes/s: the tutorial's loop (benchmarks/tutorial.py: for every note the last
    `--tutorial-window` notes (the tutorial's 25) re-run from a zero state, np.delete/np.append
    on the window) calling the checkpoint's NoteLSTM forward in eager PyTorch with torch.rand
    uniforms where the tutorial called torch.multinomial; then mpx eager / torchscript / onnx,
    each stateful (the primer once, then one T = 1 call per note, state carried) and window
    (the spec's seq_len re-run per note). `--notes` notes per run after a warm-up run, median
    of `--repeats` runs, the runners taking turns (a slow spell of a busy machine is shared).
    Opening the torch backends switches oneDNN off for the process (runtime/backends.py,
    use_torch_kernels), so the tutorial loop runs on the same torch kernels as mpx eager.
(b) 64 streams (num_outputs=64) in one batched pass, onnx and torchscript: total notes/s.
(c) cold start of the whole process `mpx run --backend onnx seed.mid --notes 256 --model
    MODEL_DIR/music_producter.onnx`: wall time and peak RSS (each run in a fresh helper
    process reading getrusage(RUSAGE_CHILDREN)), median of `--runs`, next to `python -c pass`
    and `python -c "import torch"`; and whether that process imported torch at all.
(d) --ort-sweep: onnx notes/s, 1 and 64 streams, for intra-op threads 1/2 x graph optimisation
    basic/all, on mpx's own OnnxBackend with its session swapped, so the choice in
    runtime/backends.py (onnx_session_options) rests on a measurement. One session exists at a
    time (an idle 2-thread session's pool spins and would slow the others).
(e) where one onnx stateful note's time goes, microseconds: the graph call alone
    (session.run, T = 1, state carried, the default sampling inputs, a prepared feed), the
    backend's call (adds the feed dict and the Outputs tuple), and a whole generate() note;
    the primer call (T = seq_len, once per run) is timed apart and taken out, so "Python" is
    what generate() adds per note (the uniform stream, the feed, the loop).

The targets (contract v2 issue) are printed beside the figures: one-stream onnx >= 17,700
notes/s (aim 25,000); 64 streams >= 150,000 notes/s; `mpx run` cold start < 0.4 s, < 100 MB.

Run (from the repository root, with the venv):
    python benchmarks/bench_generate.py --quick --torch-threads 1            # smoke test
    python benchmarks/bench_generate.py --ort-sweep --json benchmarks/results/generate.json
Torch uses its default thread count unless --torch-threads is given, onnxruntime mpx's default
unless --ort-threads is; on a machine whose cores are busy, spinning intra-op threads make the
figures meaningless, so use 1 for both there (the header says which counts were in force).
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
CHECKPOINTS = ("model.safetensors", "best.safetensors")  # the bundled name, then `mpx train`'s
BATCH = 64
MODES = ("stateful", "window")
TARGETS = {"onnx_notes_per_s": 17_700.0, "onnx_notes_per_s_aim": 25_000.0,
           "batched_notes_per_s": 150_000.0, "cold_start_s": 0.4, "cold_start_rss_mb": 100.0}

Case = tuple[Callable[[], object], Callable[[], object], int]  # (timed run, warm-up, notes made)


def model_paths(directory: Path) -> dict[str, Path]:
    """A model folder as `mpx export` writes it; SystemExit naming what is missing."""
    found = [directory / name for name in CHECKPOINTS if (directory / name).is_file()]
    paths = {"checkpoint": found[0] if found else directory / CHECKPOINTS[0],
             "torchscript": directory / "music_producter.pt", "onnx": directory / "music_producter.onnx"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"--model-dir {directory}: missing {', '.join(missing)} (a checkpoint "
                         f"named {' or '.join(CHECKPOINTS)}, and `mpx export --out-dir` of it)")
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notes", type=int, default=512, help="notes per timed run (default 512)")
    p.add_argument("--batched-notes", type=int, default=256,
                   help="notes per stream in the 64-stream runs (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure, median (default 3)")
    p.add_argument("--warmup", type=int, default=32, help="notes of the untimed warm-up run")
    p.add_argument("--runs", type=int, default=5, help="cold-start processes per command (default 5)")
    p.add_argument("--tutorial-window", type=int, default=tutorial.SEQ_LENGTH,
                   help=f"notes re-run per note by the tutorial loop (default the tutorial's {tutorial.SEQ_LENGTH})")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads for the tutorial, eager and torchscript (default: torch's)")
    p.add_argument("--ort-threads", type=int, default=None,
                   help="onnxruntime intra-op threads for (a), (b), (c), (e) (default: mpx's)")
    p.add_argument("--ort-sweep", action="store_true", help="also sweep onnxruntime session options")
    p.add_argument("--skip-cold-start", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 256 notes, 5 repeats, 64-stream runs of 32 notes, 3 cold starts")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--model-dir", type=Path, default=common.ARTIFACTS,
                   help="folder with model.safetensors (or best.safetensors), music_producter.pt "
                        "and music_producter.onnx (default: artifacts/)")
    args = p.parse_args(argv)
    if args.quick:
        args.notes, args.batched_notes, args.repeats, args.warmup, args.runs = 256, 32, 5, 8, 3
    return args


def open_generators(paths: dict[str, Path], ort_threads: int | None) -> dict[str, Any]:
    """Every backend on one model: eager (checkpoint), torchscript, onnx."""
    from mpx.runtime import load
    return {"eager": load(paths["checkpoint"]), "torchscript": load(paths["torchscript"]),
            "onnx": load(paths["onnx"], threads=ort_threads)}


def generation_run(gen: Any, primer: np.ndarray, notes: int, mode: str = "stateful",
                   num_outputs: int = 1) -> Callable[[], object]:
    """One mpx generation with the model's default sampling and a fixed seed."""
    return lambda: gen.generate(primer, notes, seed=0, mode=mode, num_outputs=num_outputs)


def generation_case(gen: Any, primer: np.ndarray, notes: int, warmup: int, mode: str = "stateful",
                    num_outputs: int = 1) -> Case:
    return (generation_run(gen, primer, notes, mode, num_outputs),
            generation_run(gen, primer, warmup, mode, num_outputs), notes * num_outputs)


def timed_rates(cases: dict[Any, Case], repeats: int) -> dict[Any, float]:
    """{key: (run, warm-up, notes made by run)} -> {key: notes/s}, cases interleaved."""
    seconds = common.interleaved_medians({k: c[0] for k, c in cases.items()}, repeats,
                                         {k: c[1] for k, c in cases.items()})
    return {k: cases[k][2] / seconds[k] for k in cases}


def goal_mark(value: float | None, goal: float, aim: float | None = None) -> str:
    mark = common.target_mark(value, goal)
    if aim is not None and value is not None:
        mark += f", aim {common.fmt(aim)}: {'reached' if value >= aim else 'not yet'}"
    return mark


# -- (a) single stream -------------------------------------------------------------------------
def tutorial_case(paths: dict[str, Path], seed_notes: np.ndarray, args: argparse.Namespace) -> Case:
    """The tutorial's loop on the checkpoint's NoteLSTM (the network mpx's eager backend runs),
    with the model's default sampling: only the loop differs from mpx's window mode."""
    from mpx.train.checkpoint import load_model
    model, spec = load_model(paths["checkpoint"])
    sampling = spec.sampling
    primer = seed_notes[-args.tutorial_window:]

    def run(n: int) -> Callable[[], object]:
        return lambda: tutorial.generate(model, primer, n, sampling.temperature, sampling.top_p,
                                         seq_length=args.tutorial_window)
    return run(args.notes), run(args.warmup), args.notes


def bench_single(gens: dict[str, Any], paths: dict[str, Path], seed_notes: np.ndarray,
                 primer: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    width = gens["onnx"].spec.seq_len
    cases: dict[tuple[str, str], Case] = {("tutorial loop", "window"): tutorial_case(paths, seed_notes, args)}
    for name, gen in gens.items():
        for mode in MODES:
            cases[(f"mpx {name}", mode)] = generation_case(gen, primer, args.notes, args.warmup, mode)
    rates = timed_rates(cases, args.repeats)
    reference = rates[("tutorial loop", "window")]
    rows = [{"runner": runner, "mode": mode,
             "window": (args.tutorial_window if runner == "tutorial loop" else width) if mode == "window" else None,
             "notes_per_s": rate, "vs_tutorial": common.ratio(rate, reference)}
            for (runner, mode), rate in rates.items()]
    common.print_table(
        f"(a) one stream, {args.notes} notes per run (median of {args.repeats}), notes/s",
        ["runner", "mode", "notes/s", "x tutorial", "target (notes/s)"],
        [[r["runner"], r["mode"] + (f" {r['window']}" if r["window"] else ""), r["notes_per_s"],
          r["vs_tutorial"],
          goal_mark(r["notes_per_s"], TARGETS["onnx_notes_per_s"], TARGETS["onnx_notes_per_s_aim"])
          if (r["runner"], r["mode"]) == ("mpx onnx", "stateful") else ""] for r in rows])
    return rows


# -- (b) batched -------------------------------------------------------------------------------
def bench_batched(gens: dict[str, Any], primer: np.ndarray, reference: float,
                  args: argparse.Namespace) -> list[dict[str, Any]]:
    n = args.batched_notes
    cases = {name: generation_case(gens[name], primer, n, args.warmup, num_outputs=BATCH)
             for name in ("onnx", "torchscript")}
    rows = [{"runner": f"mpx {name}", "streams": BATCH, "notes_per_s": rate,
             "vs_tutorial": common.ratio(rate, reference)}
            for name, rate in timed_rates(cases, args.repeats).items()]
    common.print_table(
        f"(b) {BATCH} streams (num_outputs={BATCH}), stateful, {n} notes each "
        f"(median of {args.repeats}), total notes/s",
        ["runner", "streams", "notes/s", "x tutorial (1 stream)", "target (notes/s)"],
        [["tutorial loop", 1, reference, 1.0, ""]]
        + [[r["runner"], r["streams"], r["notes_per_s"], r["vs_tutorial"],
            common.target_mark(r["notes_per_s"], TARGETS["batched_notes_per_s"])
            if r["runner"] == "mpx onnx" else ""] for r in rows])
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


def mpx_run_command(onnx: Path, out: Path, ort_threads: int | None) -> list[str]:
    cmd = [str(common.venv_executable("mpx")), "run", "--backend", "onnx", str(SEED_MIDI),
           "--notes", "256", "--model", str(onnx), "--out", str(out), "--force"]  # its own file, run after run
    return cmd + (["--threads", str(ort_threads)] if ort_threads else [])


def bench_cold_start(onnx: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    mpx_label = "mpx run --backend onnx seed.mid --notes 256"
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as tmp:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            mpx_label: mpx_run_command(onnx, Path(tmp) / "tmp.mid", args.ort_threads),
        }
        for label, cmd in commands.items():
            measure_process(cmd, Path(tmp))  # warm the page cache: a cold disk is not the subject
            runs = [measure_process(cmd, Path(tmp)) for _ in range(args.runs)]
            rows.append({"command": label, "argv": cmd,
                         "wall_s": statistics.median(r["wall_s"] for r in runs),
                         "rss_mb": statistics.median(r["rss_mb"] for r in runs),
                         "runs": args.runs})
        rows[-1]["imports_torch"] = imports_torch(commands[mpx_label], Path(tmp))
    mpx_row = rows[-1]
    common.print_table(
        f"(c) cold start, whole process (median of {args.runs}; model {onnx})",
        ["command", "wall s", "peak RSS MB", "target"],
        [[r["command"], r["wall_s"], r["rss_mb"],
          "" if r is not mpx_row else
          f"{common.target_mark(r['wall_s'], TARGETS['cold_start_s'], False)} s, "
          f"{common.target_mark(r['rss_mb'], TARGETS['cold_start_rss_mb'], False)} MB"]
         for r in rows])
    print(f"mpx run imported torch: {'YES' if mpx_row['imports_torch'] else 'no'}")
    return rows


# -- (d) onnxruntime options -------------------------------------------------------------------
ORT_LEVELS = {
    "basic": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


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


def mpx_onnx_default() -> tuple[int, str]:
    """The (threads, level) mpx uses: its default threads, onnx_session_options' level."""
    import onnxruntime as ort
    from mpx.runtime.backends import DEFAULT_THREADS, onnx_session_options
    level = onnx_session_options(DEFAULT_THREADS).graph_optimization_level
    names = {fn(ort): name for name, fn in ORT_LEVELS.items()}
    return DEFAULT_THREADS, names.get(level, str(level))


def sweep_round(threads: int, level: str, onnx: Path, primer: np.ndarray, args: argparse.Namespace
                ) -> tuple[float, float]:
    """(1-stream, 64-stream) notes/s of one configuration, timed once each after a warm-up.

    The session lives only for this call: an idle multi-threaded session's spinning pool
    threads would otherwise take the cores from the configurations timed after it.
    """
    gen = onnx_generator(threads, level, onnx)
    rates = timed_rates({streams: generation_case(gen, primer, n, args.warmup, num_outputs=streams)
                         for streams, n in ((1, args.notes), (BATCH, args.batched_notes))}, 1)
    del gen
    gc.collect()
    return rates[1], rates[BATCH]


def bench_ort_sweep(onnx: Path, primer: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    default = mpx_onnx_default()
    configs = [(threads, level) for threads in (1, 2) for level in ORT_LEVELS]
    rounds: dict[tuple[int, str], list[tuple[float, float]]] = {c: [] for c in configs}
    for _ in range(args.repeats):  # configurations take turns, one session at a time
        for config in configs:
            rounds[config].append(sweep_round(*config, onnx, primer, args))
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
    """Microseconds per stateful onnx note: graph call, backend wrapper, generate()'s Python."""
    from mpx.runtime.backends import zero_state
    from mpx.runtime.contract import OUTPUTS
    from mpx.runtime.rng import uniforms
    backend, spec, calls = gen.backend, gen.spec, args.notes
    from mpx.runtime import controls as control_rules
    temperature = np.array(spec.sampling.temperature, np.float32)[None]  # contract v3: per row [1, 4]
    top_p = np.array(spec.sampling.top_p, np.float32)[None]
    held = control_rules.resolve(primer)[None]  # what generate() feeds: the primer's summaries
    given = np.full((1, 4), -1.0, np.float32)
    u = uniforms(0, 1, 0, 1)[0]  # [1, 8]: any valid draw
    h0, c0 = zero_state(spec, 1)
    first = backend.call(primer[None], h0, c0, u, temperature, top_p, held, given)
    note = first.next_note[:, None, :]
    names = list(OUTPUTS)
    feed = {"notes": note, "h0": first.hn, "c0": first.cn, "uniforms": u,
            "temperature": temperature, "top_p": top_p, "controls": held, "given": given}
    primer_feed = {**feed, "notes": primer[None], "h0": h0, "c0": c0}

    def graph() -> None:  # onnxruntime alone: the feed prepared, only the state changes
        for _ in range(calls):
            _, feed["h0"], feed["c0"], _ = backend.session.run(names, feed)

    def wrapped() -> None:  # the backend's call: builds the feed dict and the Outputs tuple
        h, c = first.hn, first.cn
        for _ in range(calls):
            _, h, c, _ = backend.call(note, h, c, u, temperature, top_p, held, given)

    def primer_call() -> None:  # the one T = seq_len call that starts a stateful generation
        for _ in range(calls):
            backend.session.run(names, primer_feed)

    seconds = common.interleaved_medians({"graph": graph, "call": wrapped, "primer": primer_call,
                                          "generate": generation_run(gen, primer, calls)}, args.repeats)
    us = {k: v / calls * 1e6 for k, v in seconds.items()}  # per call (per note for generate)
    # generate(n) = one primer call + (n - 1) T = 1 calls + its own Python per note
    python = us["generate"] - (us["primer"] + (calls - 1) * us["graph"]) / calls
    per_note = {"graph_call_us": us["graph"], "backend_call_us": us["call"],
                "wrapper_us": us["call"] - us["graph"], "primer_call_us": us["primer"],
                "python_us": python, "generate_per_note_us": us["generate"],
                "notes_per_s_from_generate": 1e6 / us["generate"]}
    common.print_table(
        f"(e) one onnx stateful note, microseconds (median of {args.repeats}, {calls} notes; "
        f"primer call T = {len(primer)} once per run, taken out of 'Python')",
        ["graph call (session.run)", "backend.call", "generate() per note", "Python in generate()",
         "primer call"],
        [[us["graph"], us["call"], us["generate"], python, us["primer"]]])
    return per_note


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.start(args.torch_threads)
    paths = model_paths(args.model_dir)
    gens = open_generators(paths, args.ort_threads)
    from mpx.runtime.backends import DEFAULT_THREADS
    from mpx.runtime.midi import read_notes
    info["ort_threads"] = args.ort_threads or DEFAULT_THREADS
    spec = gens["onnx"].spec
    print(f"model: {args.model_dir} ({paths['checkpoint'].name}), config {spec.config}, "
          f"seq_len {spec.seq_len}, sampling {spec.sampling}; onnxruntime threads {info['ort_threads']}")
    seed_notes = read_notes(SEED_MIDI)
    primer = seed_notes[-spec.seq_len:]
    results: dict[str, Any] = {"machine": info, "model": {"dir": str(args.model_dir), **spec.config.to_dict(),
                                                          "seq_len": spec.seq_len,
                                                          "sampling": spec.sampling.to_dict()},
                               "options": vars(args), "targets": TARGETS}
    results["single"] = bench_single(gens, paths, seed_notes, primer, args)
    reference = results["single"][0]["notes_per_s"]
    results["batched"] = bench_batched(gens, primer, reference, args)
    if not args.skip_cold_start:
        results["cold_start"] = bench_cold_start(paths["onnx"], args)
    if args.ort_sweep:
        results["ort_sweep"] = bench_ort_sweep(paths["onnx"], primer, args)
    results["per_note_us"] = bench_breakdown(gens["onnx"], primer, args)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()

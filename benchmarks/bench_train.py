"""Training speed and corpus loading: mpx against the tutorial's way, in one run.

(a) Supervised note predictions per second, the same time budget (`--seconds`) for each,
    taken in turns (`--slices`) after a short untimed warm-up, on the same notes (the
    training split of `--data` as mpx loads it, maestro-mini by default):
    - tutorial: benchmarks/tutorial.py's loop: a Dataset of 25-note windows, DataLoader(64),
      LSTM(3, hidden) read at the last position: one prediction per window;
    - mpx: Trainer._train_step over the epoch plan of train/batches.py: 64 lanes of 128-note
      chunks, every position trained, the state carried between chunks; predictions per
      batch = the mask's sum.
    Both use the same hidden size (`--hidden`, default 128). The table also gives the time
    one epoch (every training note supervised once) would take at the measured rate, and
    mpx's batch fill (predictions / positions computed: the rest is padding of its plan).
(b) Corpus load time for each folder of `--load-data` (the README: maestro-mini, 62 files,
    and asap, 1,067 files, ~3.6M notes):
    mpx cold (a fresh cache directory: every file parsed, in `--workers` processes), mpx from
    the cache's entries (no file parsed, the pack built), mpx warm (the memory-mapped pack
    alone), and the tutorial's sequential pretty_midi + np.append load of the same files for
    reference. "Cold" means a cold mpx cache, not a cold disk: the files are read once first.
(c) Ranks (`--ranks 1 2`): the same global batch trained by 1 and by 2 processes on this
    machine (gloo, DistributedDataParallel, lanes sharded; what `mpx train --nproc N` runs),
    each for `--rank-seconds`, on the training split of `--rank-data` (default --data):
    predictions/s over all ranks, and per rank the corpus load (warm pack), the peak resident
    memory (VmHWM) and its private (RssAnon) and shared file-backed (RssFile: the mapped pack,
    shared between ranks) parts at the end. On 2 cores, 2 ranks cannot be faster: the figure
    shows the cost of the collectives.
(d) Eval (`--eval-model CHECKPOINT`): `mpx eval` (both modes, default window stride) on the
    `--eval-split` of `--eval-data`, from a warm cache, in a fresh process; wall time and peak
    memory, at `--eval-threads` (1 is fastest when other work shares the cores).

Run (from the repository root, with the venv):
    python benchmarks/bench_train.py --quick --data tests/data/midi --load-data tests/data/midi  # smoke
    python benchmarks/bench_train.py --seconds 60 --data ../shared/data/maestro-mini \
        --load-data ../shared/data/maestro-mini ../shared/data/asap --rank-data ../shared/data/asap \
        --eval-model runs/asap/best.safetensors --eval-data ../shared/data/asap \
        --json benchmarks/results/train.json
torch keeps its default thread count unless --torch-threads is given (printed either way).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import common
import tutorial

TARGETS = {"train_vs_tutorial": 20.0, "cached_vs_cold": 20.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True,
                   help="corpus for the training comparison (the README's figures: maestro-mini)")
    p.add_argument("--load-data", type=Path, nargs="*", default=[],
                   help="corpora for the load comparison (the README's figures: maestro-mini and asap)")
    p.add_argument("--seconds", type=float, default=60.0, help="time budget per training loop")
    p.add_argument("--slices", type=int, default=4,
                   help="the loops take turns in this many slices of the budget (default 4)")
    p.add_argument("--hidden", type=int, default=128, help="LSTM size of both models")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128, help="mpx chunk length")
    p.add_argument("--max-files", type=int, default=None,
                   help="at most this many files per corpus, in both parts (default: all)")
    p.add_argument("--workers", type=int, default=None, help="mpx parsing processes (default: all cores)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="notes cache for the training corpus of (a) (default: a fresh temporary "
                        "one); (b) always starts from a fresh one")
    p.add_argument("--torch-threads", type=int, default=None, help="default: torch's own")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--skip-tutorial-load", action="store_true",
                   help="skip the slow sequential tutorial load in (b)")
    p.add_argument("--ranks", type=int, nargs="*", default=[1, 2],
                   help="(c): process counts to compare (default 1 2; none: skip)")
    p.add_argument("--rank-seconds", type=float, default=30.0, help="(c): training time per process count")
    p.add_argument("--rank-data", type=Path, default=None, help="(c): corpus (default: --data)")
    p.add_argument("--eval-model", type=Path, default=None, help="(d): checkpoint to score (none: skip (d))")
    p.add_argument("--eval-data", type=Path, default=None, help="(d): corpus (default: --data)")
    p.add_argument("--eval-split", default="test", help="(d): split to score")
    p.add_argument("--eval-threads", type=int, default=1, help="(d): threads of the eval process")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 s per training loop, 62 files per corpus unless --max-files")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 10.0)
        args.rank_seconds = min(args.rank_seconds, 5.0)
        args.max_files = args.max_files or 62
    return args


def load_mpx(data: Path, cache_dir: Path, args: argparse.Namespace) -> Any:
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    return load_corpus([data], max_files=args.max_files, cache=NoteCache(cache_dir),
                       workers=args.workers)


# -- (a) training ------------------------------------------------------------------------------
def mpx_train_batches(trainer: Any) -> Iterator[int]:
    """Drive mpx's training step over successive epoch plans; yield each batch's predictions.

    The learning-rate schedule stays at its peak: setting it is a few float operations a batch.
    """
    trainer.model.train()
    for epoch in itertools.count():
        plan = trainer.planner.plan(np.random.default_rng([trainer.options.seed, epoch]))
        trainer.lanes = trainer._zero_lanes(plan.starts.shape[1])
        for s in range(plan.steps):
            yield trainer._train_step(plan, s)[1]


def run_budget(loops: dict[str, Iterator[int]], seconds: float, slices: int,
               warmup_batches: int = 2) -> dict[str, tuple[int, float]]:
    """Give each loop `seconds` of training, in `slices` turns taken in rotation.

    Taking turns spreads a slow spell of a busy machine over both loops. Each loop first runs
    `warmup_batches` untimed batches. Returns {name: (predictions, seconds)}.
    """
    for loop in loops.values():
        for _ in range(warmup_batches):
            next(loop)
    totals = {name: [0, 0.0] for name in loops}
    for _ in range(slices):
        for name, loop in loops.items():
            started = time.perf_counter()
            while time.perf_counter() - started < seconds / slices:
                totals[name][0] += next(loop)
            totals[name][1] += time.perf_counter() - started
    return {name: (n, s) for name, (n, s) in totals.items()}


def make_trainer(corpus: Any, out_dir: Path, args: argparse.Namespace, world: Any = None) -> Any:
    from mpx.runtime.config import ModelConfig
    from mpx.train.loop import Trainer
    from mpx.train.options import TrainOptions
    options = TrainOptions(model=ModelConfig(hidden=args.hidden), epochs=1, batch_size=args.batch_size,
                           seq_len=args.seq_len, device="cpu")
    return Trainer(corpus, out_dir, options, world=world)


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as tmp:
        corpus = load_mpx(args.data, args.cache_dir or Path(tmp) / "cache", args)
        train = corpus.select("train")
        notes = np.concatenate(train.notes)[:, :3].astype(np.float64)  # the tutorial's one long array (no velocity)
        trainer = make_trainer(corpus, Path(tmp) / "run", args)
        plan = trainer.planner.plan(np.random.default_rng([trainer.options.seed, 0]))
        epoch_mpx = plan.predictions
        fill = epoch_mpx / plan.starts.size / args.seq_len  # predictions / positions computed
        epoch_tutorial = len(tutorial.SequenceDataset(notes))
        measured = run_budget({"tutorial": tutorial.train_batches(notes, args.hidden),
                               "mpx": mpx_train_batches(trainer)}, args.seconds, args.slices)
    (tut_n, tut_s), (mpx_n, mpx_s) = measured["tutorial"], measured["mpx"]
    rows = [
        {"loop": "tutorial", "predictions": tut_n, "seconds": tut_s, "per_s": tut_n / tut_s,
         "epoch_predictions": epoch_tutorial},
        {"loop": "mpx", "predictions": mpx_n, "seconds": mpx_s, "per_s": mpx_n / mpx_s,
         "epoch_predictions": epoch_mpx, "batch_fill": fill},
    ]
    for row in rows:
        row["epoch_s"] = row["epoch_predictions"] / row["per_s"]
    speedup = rows[1]["per_s"] / rows[0]["per_s"]
    common.print_table(
        f"(a) supervised note predictions per second: {args.data.name}, train split "
        f"{len(train.files)} files / {len(notes):,} notes, hidden {args.hidden}, "
        f"{args.seconds:g} s each",
        ["loop", "predictions", "seconds", "predictions/s", "x tutorial", "epoch s (est.)",
         "batch fill", "target"],
        [[r["loop"], r["predictions"], r["seconds"], r["per_s"], r["per_s"] / rows[0]["per_s"],
          r["epoch_s"], f"{r['batch_fill']:.0%}" if "batch_fill" in r else "-",
          common.target_mark(speedup, TARGETS["train_vs_tutorial"])
          if r["loop"] == "mpx" else ""] for r in rows])
    print("batch fill: the share of the positions mpx computes that are predictions, not "
          "padding (epoch 1's plan)")
    return {"corpus": str(args.data), "train_files": len(train.files), "train_notes": len(notes),
            "rows": rows, "speedup": speedup}


# -- (b) corpus loading ------------------------------------------------------------------------
def warm_page_cache(files: list[Path]) -> None:
    for path in files:
        path.read_bytes()


def bench_load_one(data: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mpx.train.corpus import find_midi_files
    files = find_midi_files([data])[:args.max_files]
    warm_page_cache(files)
    row: dict[str, Any] = {"corpus": data.name, "files": len(files)}
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as tmp:
        for label in ("cold", "entries", "cached"):
            if label == "entries":
                shutil.rmtree(Path(tmp) / "packs")  # entries only: the pack is built again
            started = time.perf_counter()
            corpus = load_mpx(data, Path(tmp), args)
            row[f"mpx_{label}_s"] = time.perf_counter() - started
            row[f"mpx_{label}_parsed"] = corpus.parsed
        row["mpx_notes"], row["mpx_skipped"] = corpus.note_count, len(corpus.skipped)
        row["mpx_mapped"] = isinstance(corpus.store, np.memmap)
    if row["mpx_cached_parsed"] or row["mpx_entries_parsed"]:
        raise RuntimeError(f"{data}: a cached load parsed files")
    if not args.skip_tutorial_load:
        started = time.perf_counter()
        notes, skipped = tutorial.load_notes(files)
        row["tutorial_s"] = time.perf_counter() - started
        row["tutorial_notes"], row["tutorial_skipped"] = len(notes), skipped
    return row


def bench_load(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = [bench_load_one(data, args) for data in args.load_data]
    goal = TARGETS["cached_vs_cold"]
    common.print_table(
        f"(b) corpus load, seconds (mpx workers: {args.workers or 'all cores'}; notes: mpx, all "
        "non-drum instruments / tutorial, first instrument)",
        ["corpus", "files", "notes", "tutorial np.append", "mpx cold", "mpx entries", "mpx warm (pack)",
         "cold / warm", "tutorial / cold", "target"],
        [[r["corpus"], r["files"],
          f"{r['mpx_notes']:,} / {r['tutorial_notes']:,}" if "tutorial_notes" in r else r["mpx_notes"],
          r.get("tutorial_s"), r["mpx_cold_s"], r["mpx_entries_s"], r["mpx_cached_s"],
          r["mpx_cold_s"] / r["mpx_cached_s"], common.ratio(r.get("tutorial_s"), r["mpx_cold_s"]),
          common.target_mark(r["mpx_cold_s"] / r["mpx_cached_s"], goal)] for r in rows])
    skipped = [f"{r['corpus']}: mpx {r['mpx_skipped']}, tutorial {r.get('tutorial_skipped', '-')}"
               for r in rows if r["mpx_skipped"] or r.get("tutorial_skipped")]
    if skipped:
        print("files skipped (unreadable): " + "; ".join(skipped))
    print("mpx entries: the checked cache entries read and packed again; warm: the memory-mapped "
          "pack alone (what a second run, and every rank, opens)")
    return rows


# -- (c) ranks ---------------------------------------------------------------------------------
def memory(mapped: str | None = None) -> dict[str, float]:
    """This process's peak and current resident memory (MB), from /proc/self/status, and the
    resident part of the file `mapped` (the pack), from /proc/self/smaps."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) / 1024
    fields["pack"] = 0.0
    if mapped:
        inside = False
        with open("/proc/self/smaps") as fh:
            for line in fh:
                if line[:1].isalnum() and "-" in line.split()[0] and not line.startswith(("Rss", "Pss")):
                    inside = line.rstrip().endswith(mapped)
                elif inside and line.startswith("Rss:"):
                    fields["pack"] += int(line.split()[1]) / 1024
    return fields


def rank_worker(rank: int, size: int, port: int, args: argparse.Namespace, cache: str,
                results: Any) -> None:
    """One rank as torchrun starts it: load the corpus (warm pack), train for the time budget.
    The budget ends on all ranks at the same batch (a flag all-reduced per batch, as the
    training loop's Ctrl-C flag is)."""
    import torch
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.rank_threads)
    from mpx.train import distributed
    started = time.perf_counter()
    corpus = load_mpx(args.rank_data, Path(cache), args)
    pack = str(corpus.store.filename) if isinstance(corpus.store, np.memmap) else None
    load_s, after_load = time.perf_counter() - started, memory(pack)
    world = distributed.start(torch.device("cpu"))
    try:
        with tempfile.TemporaryDirectory(prefix="mpx-bench-rank-") as tmp:
            trainer = make_trainer(corpus, Path(tmp), args, world)
            plan = trainer.planner.plan(np.random.default_rng([trainer.options.seed, 0]))
            trainer.lane_count = plan.starts.shape[1]
            trainer.lanes = trainer._zero_lanes(len(world.lanes(trainer.lane_count)))
            trainer.model.train()
            for s in range(2):  # warm-up
                trainer._train_step(plan, s)
            predictions, s = 0, 2
            started = time.perf_counter()
            while not world.any(time.perf_counter() - started >= args.rank_seconds) and s < plan.steps:
                trainer._train_step(plan, s)
                predictions += int(plan.lengths[s].sum())  # the whole batch: every rank's lanes
                s += 1
            seconds = time.perf_counter() - started
    finally:
        distributed.stop(world)
    results.put({"rank": rank, "load_s": load_s, "after_load": after_load, "end": memory(pack),
                 "predictions": predictions, "seconds": seconds, "threads": args.rank_threads})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_ranks(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp
    data = args.rank_data = args.rank_data or args.data
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as cache:
        cache = str(args.cache_dir or cache)
        load_mpx(data, Path(cache), args)  # parse once: the ranks open the warm pack
        context = mp.get_context("spawn")
        for size in args.ranks:
            results = context.Queue()
            args.rank_threads = args.torch_threads or max(1, (os.cpu_count() or 1) // size)
            mp.start_processes(rank_worker, args=(size, free_port(), args, cache, results), nprocs=size,
                               join=True, start_method="spawn")
            ranks = sorted((results.get() for _ in range(size)), key=lambda r: r["rank"])
            rows.append({"ranks": size, "per_rank": ranks, "predictions": ranks[0]["predictions"],
                         "seconds": max(r["seconds"] for r in ranks),
                         "per_s": ranks[0]["predictions"] / max(r["seconds"] for r in ranks)})
    common.print_table(
        f"(c) ranks on this machine: {data.name} train split, global batch {args.batch_size} lanes x "
        f"{args.seq_len} notes, hidden {args.hidden}, gloo, {args.rank_seconds:g} s each",
        ["ranks", "threads/rank", "predictions/s", "x 1 rank", "rank", "load s (pack)",
         "peak RSS MB", "private MB", "pack MB (shared)", "libraries MB (shared)"],
        [[row["ranks"] if r["rank"] == 0 else "", r["threads"] if r["rank"] == 0 else "",
          row["per_s"] if r["rank"] == 0 else "", row["per_s"] / rows[0]["per_s"] if r["rank"] == 0 else "",
          r["rank"], r["load_s"], r["end"]["VmHWM"], r["end"]["RssAnon"], r["end"]["pack"],
          r["end"]["RssFile"] - r["end"]["pack"]] for row in rows for r in row["per_rank"]])
    print("resident memory per rank at the end: private (its own: torch, the model, the optimizer, "
          "batches) and file-backed pages shared by every process that maps them: the pack of notes "
          "(one copy in memory for all ranks) and torch's libraries")
    return rows


# -- (d) eval -----------------------------------------------------------------------------------
def bench_eval(args: argparse.Namespace) -> dict[str, Any]:
    """`mpx eval` as a user runs it, warm cache (a first, untimed run parses), fresh process."""
    data = args.eval_data or args.data
    command = [sys.executable, "-m", "mpx", "eval", str(args.eval_model), str(data), "--split",
               args.eval_split, "--threads", str(args.eval_threads), "--json"]
    if args.max_files:
        command += ["--max-files", str(args.max_files)]
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as cache:
        env = {**os.environ, "MPX_CACHE_DIR": str(args.cache_dir or cache)}
        subprocess.run(command, capture_output=True, text=True, env=env, check=True)  # warm the cache
        timed = ["/usr/bin/time", "-f", "%e %M"] if Path("/usr/bin/time").is_file() else []
        started = time.perf_counter()
        done = subprocess.run(timed + command, capture_output=True, text=True, env=env, check=True)
        seconds = time.perf_counter() - started
    report = json.loads(done.stdout)
    peak = float(done.stderr.split()[-1]) / 1024 if timed else None
    row = {"model": str(args.eval_model), "corpus": data.name, "split": args.eval_split,
           "files": report["files"], "seconds": seconds, "peak_rss_mb": peak, "threads": args.eval_threads,
           "window_stride": report["window"]["stride"], "window_predictions": report["window"]["predictions"],
           "stateful_predictions": report["stateful"]["predictions"]}
    common.print_table(
        f"(d) mpx eval, warm cache, both modes: {data.name} {args.eval_split} split, {args.eval_threads} thread(s)",
        ["files", "stateful predictions", "windows (stride)", "seconds", "peak RSS MB", "target"],
        [[row["files"], row["stateful_predictions"], f"{row['window_predictions']:,} ({row['window_stride']})",
          seconds, peak, common.target_mark(seconds, 60.0, higher_is_better=False)]])
    return row


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.start(args.torch_threads)
    results: dict[str, Any] = {"machine": info, "options": vars(args)}
    if not args.skip_train:
        results["train"] = bench_train(args)
    if not args.skip_load and args.load_data:
        results["load"] = bench_load(args)
    if args.ranks:
        results["ranks"] = bench_ranks(args)
    if args.eval_model:
        results["eval"] = bench_eval(args)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()

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
    mpx cold (a fresh cache directory: every file parsed, in `--workers` processes) against
    mpx cached (the same directory again: no file parsed), and the tutorial's sequential
    pretty_midi + np.append load of the same files for reference. "Cold" means a cold mpx
    cache, not a cold disk: the files are read once before timing.

Run (from the repository root, with the venv):
    python benchmarks/bench_train.py --quick --data tests/data/midi --load-data tests/data/midi  # smoke
    python benchmarks/bench_train.py --seconds 60 --data ../shared/data/maestro-mini \
        --load-data ../shared/data/maestro-mini ../shared/data/asap --json benchmarks/results/train.json
torch keeps its default thread count unless --torch-threads is given (printed either way).
"""
from __future__ import annotations

import argparse
import itertools
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
    p.add_argument("--pitch-input", default="scalar", choices=("scalar", "embedding"),
                   help="mpx model input encoding (the tutorial's is scalar)")
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
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 s per training loop, 62 files per corpus unless --max-files")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 10.0)
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


def make_trainer(corpus: Any, out_dir: Path, args: argparse.Namespace) -> Any:
    from mpx.runtime.config import ModelConfig
    from mpx.train.loop import Trainer
    from mpx.train.options import TrainOptions
    options = TrainOptions(model=ModelConfig(hidden=args.hidden, pitch_input=args.pitch_input),
                           epochs=1, batch_size=args.batch_size, seq_len=args.seq_len, device="cpu")
    return Trainer(corpus, out_dir, options)


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mpx-bench-") as tmp:
        corpus = load_mpx(args.data, args.cache_dir or Path(tmp) / "cache", args)
        train = corpus.select("train")
        notes = np.concatenate(train.notes).astype(np.float64)  # the tutorial's one long array
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
        for label in ("cold", "cached"):
            started = time.perf_counter()
            corpus = load_mpx(data, Path(tmp), args)
            row[f"mpx_{label}_s"] = time.perf_counter() - started
            row[f"mpx_{label}_parsed"] = corpus.parsed
        row["mpx_notes"], row["mpx_skipped"] = corpus.note_count, len(corpus.skipped)
    if row["mpx_cached_parsed"]:
        raise RuntimeError(f"{data}: the cached load parsed {row['mpx_cached_parsed']} files")
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
        ["corpus", "files", "notes", "tutorial np.append", "mpx cold", "mpx cached",
         "cold / cached", "tutorial / cold", "target"],
        [[r["corpus"], r["files"],
          f"{r['mpx_notes']:,} / {r['tutorial_notes']:,}" if "tutorial_notes" in r else r["mpx_notes"],
          r.get("tutorial_s"), r["mpx_cold_s"], r["mpx_cached_s"],
          r["mpx_cold_s"] / r["mpx_cached_s"], common.ratio(r.get("tutorial_s"), r["mpx_cold_s"]),
          common.target_mark(r["mpx_cold_s"] / r["mpx_cached_s"], goal)] for r in rows])
    skipped = [f"{r['corpus']}: mpx {r['mpx_skipped']}, tutorial {r.get('tutorial_skipped', '-')}"
               for r in rows if r["mpx_skipped"] or r.get("tutorial_skipped")]
    if skipped:
        print("files skipped (unreadable): " + "; ".join(skipped))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.start(args.torch_threads)
    results: dict[str, Any] = {"machine": info, "options": vars(args)}
    if not args.skip_train:
        results["train"] = bench_train(args)
    if not args.skip_load and args.load_data:
        results["load"] = bench_load(args)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()

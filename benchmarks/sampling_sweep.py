"""Choose a model's default sampling (temperature and top-p per attribute) by the generation
report (mpx.runtime.report) on the pieces of the validation split, never the test split.

Stage by stage, one group of attributes at a time (timing = step and duration together, then
pitch, then velocity), every setting of the group's grid continues each validation piece with
512 notes and is scored; the best setting of a stage is kept for the next. The score is the
number of the report's targets met, then the mean of the four overlaps minus the chord gap and
the short-note share: it prefers music that meets the targets, then music nearer the real
continuations. With --write, the chosen defaults go into the checkpoint's spec (the weights
are unchanged), so every artifact exported from it carries them.

    python benchmarks/sampling_sweep.py --model runs/v2/best.safetensors --data ../shared/data/asap [--write]
    python benchmarks/sampling_sweep.py --model artifacts/music_producter.onnx --data tests/data/midi --split all --quick
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

from mpx.runtime import load
from mpx.runtime.generate import GenerationOptions
from mpx.runtime.report import TARGETS
from mpx.runtime.spec import Sampling
from mpx.train.corpus import load_corpus
from mpx.train.evaluate import generation_split

GROUPS = {"timing": (1, 2), "pitch": (0,), "velocity": (3,)}
GRID = {"temperature": (0.85, 0.95, 1.0, 1.05), "top_p": (0.85, 0.9, 0.95, 1.0)}
QUICK_GRID = {"temperature": (0.9, 1.0), "top_p": (0.9, 1.0)}


def score(summary: dict[str, float]) -> tuple[int, float]:
    met = sum(1 for key, goal in TARGETS.items()
              if (summary[key] <= goal if key in ("chord_gap", "short_notes") else summary[key] >= goal))
    overlaps = sum(summary[f"overlap_{n}"] for n in ("pitch", "step", "duration", "velocity")) / 4
    return met, overlaps - summary["chord_gap"] - summary["short_notes"]


def with_group(sampling: Sampling, group: str, temperature: float, top_p: float) -> Sampling:
    t, p = list(sampling.temperature), list(sampling.top_p)
    for a in GROUPS[group]:
        t[a], p[a] = temperature, top_p
    return Sampling(tuple(t), tuple(p))


def run(generator: Any, corpus: Any, split: str, files: int | None, sampling: Sampling) -> dict[str, Any]:
    options = GenerationOptions(temperature=sampling.temperature, top_p=sampling.top_p)
    report = generation_split(generator, corpus, split, files, options)
    return {"sampling": sampling.to_dict(), "summary": report["summary"], "score": score(report["summary"])}


def sweep(generator: Any, corpus: Any, split: str, files: int | None, grid: dict[str, tuple[float, ...]],
          start: Sampling) -> tuple[Sampling, list[dict[str, Any]]]:
    best, rows = start, []
    for group in GROUPS:
        stage = []
        for temperature, top_p in itertools.product(grid["temperature"], grid["top_p"]):
            started = time.perf_counter()
            row = run(generator, corpus, split, files, with_group(best, group, temperature, top_p))
            row.update(stage=group, seconds=round(time.perf_counter() - started, 1))
            stage.append(row)
            s = row["summary"]
            print(f"{group:<8} t {temperature:<5} p {top_p:<5} met {row['score'][0]}/{len(TARGETS)} "
                  f"score {row['score'][1]:+.3f}  pace {s['pace_kept']:.2f} tempo {s['tempo_fidelity']:.2f} "
                  f"gap {s['chord_gap']:.3f} short {s['short_notes']:.4f} overlaps p/s/d/v "
                  f"{s['overlap_pitch']:.2f}/{s['overlap_step']:.2f}/{s['overlap_duration']:.2f}/"
                  f"{s['overlap_velocity']:.2f}", flush=True)
        chosen = max(stage, key=lambda r: r["score"])
        best = Sampling(tuple(chosen["sampling"]["temperature"]), tuple(chosen["sampling"]["top_p"]))
        print(f"-> {group}: {best.to_dict()}", flush=True)
        rows.extend(stage)
    return best, rows


def write_defaults(checkpoint_path: Path, sampling: Sampling, evidence: dict[str, Any]) -> None:
    from mpx.train import checkpoint
    loaded = checkpoint.load(checkpoint_path)
    metrics = {**loaded.spec.metrics, "sampling_sweep": evidence}
    checkpoint.save(checkpoint_path, loaded.spec.replace(sampling=sampling, metrics=metrics),
                    loaded.state_dict, loaded.extra or None, loaded.progress or None)
    print(f"wrote the defaults into {checkpoint_path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (.safetensors) or artifact")
    parser.add_argument("--data", nargs="+", required=True, help="MIDI files or folders (ASAP: its metadata splits by piece)")
    parser.add_argument("--split", default="val", help="the split whose pieces are continued (default val)")
    parser.add_argument("--files", type=int, default=None, help="at most this many pieces, spread over the split")
    parser.add_argument("--quick", action="store_true", help="a 2 x 2 grid per stage (smoke test)")
    parser.add_argument("--write", action="store_true", help="store the chosen defaults in the checkpoint's spec")
    parser.add_argument("--json", type=Path, help="write every row and the choice as JSON")
    args = parser.parse_args(argv)
    generator = load(args.model)
    corpus = load_corpus(args.data)
    start = generator.spec.sampling
    best, rows = sweep(generator, corpus, args.split, args.files, QUICK_GRID if args.quick else GRID, start)
    final = run(generator, corpus, args.split, args.files, best)
    print(f"chosen: {best.to_dict()}; on the {args.split} split: {final['score'][0]}/{len(TARGETS)} targets met")
    evidence = {"split": args.split, "pieces": final["summary"]["pieces"], "chosen": best.to_dict(),
                "summary": final["summary"], "command": "python benchmarks/sampling_sweep.py"}
    if args.json:
        args.json.write_text(json.dumps({"start": start.to_dict(), "rows": rows, **evidence}, indent=2))
    if args.write:
        if args.model.suffix != ".safetensors":
            raise SystemExit("--write needs a checkpoint (.safetensors): export after writing")
        write_defaults(args.model, best, evidence)


if __name__ == "__main__":
    main()

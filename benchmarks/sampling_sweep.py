"""Choose a model's default sampling (temperature and top-p per attribute) by the generation
report (mpx.runtime.report) on the pieces of the validation split, never the test split.

Stage by stage, one group of attributes at a time (timing = step and duration together, then
pitch, then velocity), every setting of the group's grid continues each validation piece with
512 notes and is scored; the best setting of a stage is kept for the next. The score is
continuous, so that noise in one figure near its target cannot decide: the mean of the four
overlaps (how alike the generated and the real continuation are), plus a quarter of pace kept
and tempo fidelity, minus the chord gap and ten times the short-note share. (Counting the
targets met flipped on differences of 0.0008 in the short-note share.) With --write, the chosen
defaults go into the checkpoint's spec (the weights are unchanged), so every artifact exported
from it carries them.

    python benchmarks/sampling_sweep.py --model runs/v2/best.safetensors --data ../shared/data/asap [--write]
    python benchmarks/sampling_sweep.py --model runs/v2/music_producter.onnx --data ../shared/data/asap \
        --write runs/v2/best.safetensors          # the same, faster: ONNX generates, the checkpoint keeps the choice
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
GRID = {"temperature": (0.9, 1.0, 1.1), "top_p": (0.9, 0.95, 1.0)}
QUICK_GRID = {"temperature": (0.9, 1.0), "top_p": (0.9, 1.0)}


def score(summary: dict[str, float]) -> tuple[float, int]:
    """(the continuous score the choice is made by, the number of targets met, for the record)."""
    met = sum(1 for key, goal in TARGETS.items()
              if (summary[key] <= goal if key in ("chord_gap", "short_notes") else summary[key] >= goal))
    overlaps = sum(summary[f"overlap_{n}"] for n in ("pitch", "step", "duration", "velocity")) / 4
    steady = (summary["pace_kept"] + summary["tempo_fidelity"]) / 4
    return overlaps + steady - summary["chord_gap"] - 10 * summary["short_notes"], met


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
          start: Sampling, stages: list[str]) -> tuple[Sampling, list[dict[str, Any]]]:
    best, rows = start, []
    for group in stages:
        stage = []
        for temperature, top_p in itertools.product(grid["temperature"], grid["top_p"]):
            started = time.perf_counter()
            row = run(generator, corpus, split, files, with_group(best, group, temperature, top_p))
            row.update(stage=group, seconds=round(time.perf_counter() - started, 1))
            stage.append(row)
            s = row["summary"]
            print(f"{group:<8} t {temperature:<5} p {top_p:<5} score {row['score'][0]:+.3f} "
                  f"(targets met {row['score'][1]}/{len(TARGETS)})  pace {s['pace_kept']:.2f} tempo {s['tempo_fidelity']:.2f} "
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
    parser.add_argument("--stages", nargs="+", choices=list(GROUPS), default=list(GROUPS),
                        help="the groups to sweep, in order (default: timing pitch velocity)")
    parser.add_argument("--start", nargs=2, metavar=("TEMPERATURE", "TOP_P"),
                        help="the setting to start from, one or four values each (default: the model's)")
    parser.add_argument("--write", type=Path, metavar="CHECKPOINT", nargs="?", const=True,
                        help="store the chosen defaults in this checkpoint's spec (default: --model, "
                             "when it is one); export afterwards to carry them into the artifacts")
    parser.add_argument("--json", type=Path, help="write every row and the choice as JSON")
    args = parser.parse_args(argv)
    generator = load(args.model)
    corpus = load_corpus(args.data)
    start = Sampling(*args.start) if args.start else generator.spec.sampling
    best, rows = sweep(generator, corpus, args.split, args.files, QUICK_GRID if args.quick else GRID, start,
                       args.stages)
    final = run(generator, corpus, args.split, args.files, best)
    print(f"chosen: {best.to_dict()}; on the {args.split} split: score {final['score'][0]:+.3f}, "
          f"{final['score'][1]}/{len(TARGETS)} targets met")
    evidence = {"split": args.split, "pieces": final["summary"]["pieces"], "chosen": best.to_dict(),
                "summary": final["summary"], "command": "python benchmarks/sampling_sweep.py"}
    if args.json:
        args.json.write_text(json.dumps({"start": start.to_dict(), "rows": rows, **evidence}, indent=2))
    if args.write:
        target = args.model if args.write is True else args.write
        if target.suffix != ".safetensors":
            raise SystemExit("--write needs a checkpoint (.safetensors): export after writing")
        write_defaults(target, best, evidence)


if __name__ == "__main__":
    main()

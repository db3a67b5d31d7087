"""Choose the default sampling settings by the generation checks (mpx.runtime.quality).

For every setting of a grid (temperature, top_p, timing), the bundled ONNX model continues
each seed with 512 notes, for several random seeds, and the checks are applied to each
continuation: at least 24 distinct pitches, no run of one pitch longer than 8, under 2% of notes
shorter than 10 ms, a median step within a factor 2 of the seed's. Seeds: one performance of
every test-side piece of ASAP (`--data ../shared/data/asap`, whole files, the split mpx trains
with), or by default the five test-piece seeds copied into tests/data/seeds.

The table gives the share of runs passing every check, passing the tempo check (median step),
passing the other three, and mean figures.

    python benchmarks/sampling_sweep.py --data ../shared/data/asap [--trials 2]
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from mpx.runtime import load, read_notes
from mpx.runtime.quality import failed_checks, measure

ROOT = Path(__file__).resolve().parents[1]


def test_piece_seeds(data: Path | None) -> dict[str, np.ndarray]:
    if data is None:
        return {p.stem: read_notes(p) for p in sorted((ROOT / "tests" / "data" / "seeds").glob("*.mid"))}
    from mpx.train.corpus import load_corpus
    test = load_corpus([data]).select("test")
    seeds: dict[str, np.ndarray] = {}
    for path, notes, piece in zip(test.files, test.notes, test.groups):
        seeds.setdefault(piece, notes)  # the first performance of each piece
    return seeds


def sweep(model: Path, seeds: dict[str, np.ndarray], grid: list[tuple], trials: int, notes: int) -> list[dict]:
    gen = load(model)
    rows = []
    for temperature, top_p, timing in grid:
        figures, passed, tempo, other = [], 0, 0, 0
        for (name, seed), trial in itertools.product(seeds.items(), range(trials)):
            f = measure(gen.generate(seed, notes, temperature=temperature, top_p=top_p, timing=timing,
                                     seed=trial), seed)
            problems = failed_checks(f)
            figures.append(f)
            passed += not problems
            tempo += "tempo" not in problems
            other += not set(problems) - {"tempo"}
        n = len(figures)
        rows.append({"temperature": temperature, "top_p": top_p, "timing": timing, "runs": n,
                     "pass_rate": passed / n, "tempo_pass_rate": tempo / n, "other_pass_rate": other / n,
                     **{k: float(np.mean([f[k] for f in figures]))
                        for k in ("distinct_pitches", "longest_repeat_run", "short_fraction")},
                     "median_step_ratio": float(np.median([f["step_ratio"] for f in figures]))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "music_producter.onnx")
    parser.add_argument("--data", type=Path, help="ASAP folder: seeds from its test split")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 0.9, 1.0, 1.1, 1.2])
    parser.add_argument("--top-ps", type=float, nargs="+", default=[0.9, 0.95, 1.0])
    parser.add_argument("--timings", nargs="+", default=["sample", "mean"])
    parser.add_argument("--trials", type=int, default=2, help="random seeds per seed file")
    parser.add_argument("--notes", type=int, default=512)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds = test_piece_seeds(args.data)
    grid = list(itertools.product(args.temperatures, args.top_ps, args.timings))
    rows = sweep(args.model, seeds, grid, args.trials, args.notes)
    print(f"{args.notes} notes per run, {len(seeds)} seeds x {args.trials} trials per setting, model {args.model}")
    print(f"{'temp':>5} {'top_p':>6} {'timing':>7} {'all':>6} {'tempo':>6} {'other':>6} {'distinct':>9} "
          f"{'max run':>8} {'<10ms':>7} {'step ratio':>11}")
    for r in rows:
        print(f"{r['temperature']:>5.2f} {r['top_p']:>6.2f} {r['timing']:>7} {r['pass_rate']:>6.0%} "
              f"{r['tempo_pass_rate']:>6.0%} {r['other_pass_rate']:>6.0%} {r['distinct_pitches']:>9.1f} "
              f"{r['longest_repeat_run']:>8.1f} {r['short_fraction']:>7.2%} {r['median_step_ratio']:>11.2f}")
    best = max(rows, key=lambda r: (r["pass_rate"], -abs(1 - r["temperature"]) - abs(1 - r["top_p"])))
    print(f"best: temperature {best['temperature']}, top_p {best['top_p']}, timing {best['timing']} "
          f"({best['pass_rate']:.0%} of runs pass every check)")
    if args.json:
        args.json.write_text(json.dumps({"seeds": list(seeds), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""The controls (runtime/controls.py) on a corpus' training side: mean, spread and percentiles of
each control over windows (one window of the WINDOW notes after every 16th position) and what
the graph's normalisation (NORMALISE) makes of them.

    python benchmarks/v3_controls.py --data ../shared/data/asap [--json PATH]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from mpx.runtime import controls
from mpx.train.corpus import load_corpus


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--every", type=int, default=16, help="one window per this many positions")
    p.add_argument("--json")
    args = p.parse_args()
    corpus = load_corpus([args.data], splits=[args.split]).select(args.split)
    index, limit = [], []
    for start, n in zip(corpus.starts, corpus.lengths):
        pos = np.arange(start, start + n - 1, args.every)
        index.append(pos)
        limit.append(np.full(len(pos), start + n))
    index, limit = np.concatenate(index), np.concatenate(limit)
    values = controls.following(corpus.store, index, limit)
    norm = controls.normalised(np.where(values >= 0, values, np.nan))
    out = {}
    for i, name in enumerate(controls.CONTROLS):
        v = values[:, i]
        v = v[v >= 0]
        z = norm[:, i][np.isfinite(norm[:, i])]
        q = np.percentile(v, [1, 5, 25, 50, 75, 95, 99])
        out[name] = {"given": float(len(v) / len(values)), "mean": float(v.mean()), "std": float(v.std()),
                     "percentiles_1_5_25_50_75_95_99": [round(float(x), 4) for x in q],
                     "normalised_mean": float(z.mean()), "normalised_std": float(z.std())}
        print(f"{name:<16} given {len(v) / len(values):.3f} mean {v.mean():8.3f} std {v.std():7.3f} "
              f"p5..p95 {q[1]:8.3f} {q[5]:8.3f}  normalised {z.mean():+.2f} +- {z.std():.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"split": args.split, "windows": int(len(values)), "window": controls.WINDOW,
                       "controls": out}, fh, indent=1)


if __name__ == "__main__":
    main()

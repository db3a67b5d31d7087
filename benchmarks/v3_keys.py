"""Key profiles for `--key` (runtime/controls.py KEY_PROFILES): the pitch-class profile of
major-key and of minor-key music, measured on a corpus' training side. Each file's key is
estimated by the Krumhansl-Kessler probe-tone profiles (the best correlation over the 24 keys),
its profile rotated to C (major) or A (minor), and the files' profiles averaged, each file
weighted by its notes.

    python benchmarks/v3_keys.py --data ../shared/data/asap [--json PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mpx.train.corpus import load_corpus

# Krumhansl & Kessler (1982) probe-tone ratings, C major and C minor
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--json")
    args = p.parse_args()
    corpus = load_corpus([args.data], splits=["train"]).select("train")
    sums = {"major": np.zeros(12), "minor": np.zeros(12)}
    files = {"major": 0, "minor": 0}
    for notes in corpus.notes:
        counts = np.bincount(np.floor(np.asarray(notes[:, 0], np.float64) + 0.5).astype(int) % 12, minlength=12)
        best = max(((np.corrcoef(counts, np.roll(profile, tonic))[0, 1], mode, tonic)
                    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)) for tonic in range(12)))
        _, mode, tonic = best
        rotated = np.roll(counts, -tonic)              # the tonic at 0: C major, C minor
        sums[mode] += rotated
        files[mode] += 1
    out = {mode: [round(float(x), 4) for x in s / s.sum()] for mode, s in sums.items()}
    result = {"files": files, "profiles_tonic_at_0": out}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

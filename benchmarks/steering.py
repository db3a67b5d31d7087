"""How far the controls steer the bundled model from one seed: for density, velocity_mean and
pitch_mean, three requested values; the median over K takes of what the generated notes measure
(runtime/controls.summaries over each take's notes), beside the primer and the default.

    python benchmarks/steering.py [--model artifacts/music_producter.onnx] [--seed-file artifacts/seed.mid]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from mpx.runtime import controls, load, read_notes

REQUESTS = {"density": (3.0, 6.0, 10.0), "velocity_mean": (45.0, 65.0, 85.0), "pitch_mean": (55.0, 65.0, 75.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the bundled ONNX model")
    parser.add_argument("--seed-file", default="artifacts/seed.mid")
    parser.add_argument("--notes", type=int, default=256)
    parser.add_argument("--takes", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    gen = load(args.model, "onnx" if args.model is None else None, threads=1)
    primer = read_notes(args.seed_file)
    names = list(controls.CONTROLS)

    def made(**options: object) -> np.ndarray:
        out = gen.generate(primer, args.notes, num_outputs=args.takes, seed=0, **options)
        return np.median([controls.summaries(take) for take in out], axis=0)

    rows = {"primer": controls.summaries(primer[-gen.spec.seq_len:]).tolist(), "default": made().tolist()}
    print(f"{'':16}" + "".join(f"{n:>16}" for n in REQUESTS))
    for label in ("primer", "default"):
        print(f"{label:16}" + "".join(f"{rows[label][names.index(n)]:16.2f}" for n in REQUESTS))
    steered: dict[str, list[list[float]]] = {}
    for name, values in REQUESTS.items():
        steered[name] = [[v, float(made(controls={name: v})[names.index(name)])] for v in values]
        print(f"{name:16}" + "  ".join(f"asked {v:g} -> {g:.2f}" for v, g in steered[name]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python benchmarks/steering.py", "notes": args.notes, "takes": args.takes,
                       "controls": names, **rows, "steered": steered}, f, indent=1)


if __name__ == "__main__":
    main()

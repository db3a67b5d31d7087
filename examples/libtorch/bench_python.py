"""What `mpx_generate --bench` measures, from Python: one stream of the contract v2 protocol,
one thread, no oneDNN, the primer call included, after a 64-note warm-up.

    python examples/libtorch/bench_python.py MODEL PRIMER.csv [--notes 2000] [--repeats 5]

MODEL: music_producter.pt (TorchScript), or a .pt2 written by mpx.export.pt2
(save_exported_program or save_aoti_package; which one is read from the archive).
Prints notes/s of each repeat and their median.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

GAMMA, M1, M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping modulo 2^64 is the definition
        z = z + GAMMA
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def stream_uniforms(seed: int, n: int) -> torch.Tensor:
    """[n, 1, 8]: the uniforms of notes 0..n-1 of stream 0 (CONTRACT_V2.md), all at once."""
    with np.errstate(over="ignore"):
        key = splitmix64(splitmix64(np.uint64(seed)) + np.uint64(0))
        bits = splitmix64(key + np.arange(8 * n, dtype=np.uint64)) >> np.uint64(40)
    return torch.from_numpy((bits.astype(np.float32) * np.float32(2.0 ** -24)).reshape(n, 1, 8))


def load(path: str):  # type: ignore[no-untyped-def]
    if path.endswith(".pt"):
        return torch.jit.load(path)
    from mpx.export import pt2
    try:
        return pt2.load_aoti_package(path)[0]
    except Exception:  # not a package: an ExportedProgram archive
        return pt2.load_exported_program(path)[0]


def generate(model, primer: np.ndarray, n: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    h, c = model.zero_state(1)
    temperature, top_p = torch.ones(4), torch.full((4,), 0.95)
    uniforms = stream_uniforms(seed, n)
    x = torch.from_numpy(primer)[None].contiguous()
    with torch.inference_mode():
        for i in range(n):
            note, h, c, _ = model(x, h, c, uniforms[i], temperature, top_p)
            x = note.reshape(1, 1, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("primer")
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    primer = np.loadtxt(args.primer, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
    model = load(args.model)
    generate(model, primer, 64, 0)  # warm-up: TorchScript optimises over the first calls
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        generate(model, primer, args.notes, 0)
        rates.append(args.notes / (time.perf_counter() - start))
    print(" ".join(f"{r:.0f}" for r in rates), f"-> median {statistics.median(rates):.0f} notes/s")


if __name__ == "__main__":
    main()

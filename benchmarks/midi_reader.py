"""The fast MIDI reader against pretty_midi, on whole corpora and on fuzzed files.

    python benchmarks/midi_reader.py DATA_DIR [DATA_DIR ...] [--fuzz 3000] [--json PATH]

For every MIDI file under the folders: read_notes through the fast reader (symusic, with
pretty_midi's rules: runtime/midi_fast.py) and through pretty_midi alone, with and without the
sustain pedal; the arrays must be equal (pitch, step, duration, velocity, same order, float32
bit for bit), or both readers refuse the file. Prints the counts (same, declined = read by
pretty_midi, different), the time of each reader, and the fast reader on a 1M-note file.

--fuzz N: N damaged copies of the files (flipped, set, inserted, deleted bytes; cut files;
broken chunk lengths), each parsed by symusic in a child process first (a crash there counts,
and must stay 0), then compared: same notes, both refuse, declined, fast reads what pretty_midi
refuses, different notes (must stay 0).
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from mpx.runtime import midi_fast
from mpx.runtime.errors import MidiError
from mpx.runtime.midi import read_notes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def outcome(data: bytes, **options: object) -> tuple[np.ndarray | str, float]:
    started = time.process_time()
    try:
        result: np.ndarray | str = read_notes(data, name="f.mid", **options)
    except MidiError as exc:
        result = f"refused: {exc}"
    return result, time.process_time() - started


def equal(a: np.ndarray | str, b: np.ndarray | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return a.shape == b.shape and np.array_equal(a, b)


def corpus(folders: list[Path]) -> dict:
    files = sorted(p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    counts: Counter[str] = Counter()
    seconds = Counter[str]()
    different = []
    for path in files:
        data = path.read_bytes()
        counts["fast path" if midi_fast.read(data) is not None else "declined (pretty_midi reads)"] += 1
        for pedal in (False, True):
            fast, t_fast = outcome(data, pedal=pedal)
            slow, t_slow = outcome(data, pedal=pedal, fast=False)
            seconds[f"fast{'+pedal' if pedal else ''}"] += t_fast
            seconds[f"pretty_midi{'+pedal' if pedal else ''}"] += t_slow
            if equal(fast, slow):
                counts[f"same{' (pedal)' if pedal else ''}"] += 1
            else:
                counts[f"DIFFERENT{' (pedal)' if pedal else ''}"] += 1
                different.append(f"{path} pedal={pedal}")
    return {"files": len(files), "counts": dict(counts), "cpu_seconds": {k: round(v, 2) for k, v in seconds.items()},
            "different": different}


def long_file() -> dict:
    from test_midi_fast import long_file as make
    data = make(1_000_000)
    fast, t_fast = outcome(data)
    return {"notes": len(fast) if not isinstance(fast, str) else fast, "fast_cpu_s": round(t_fast, 2),
            "bytes": len(data)}


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not out:
            break
        i, kind = rng.randrange(len(out)), rng.choice(["flip", "set", "insert", "delete", "cut", "length"])
        if kind == "flip":
            out[i] ^= 1 << rng.randrange(8)
        elif kind == "set":
            out[i] = rng.randrange(256)
        elif kind == "insert":
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == "delete":
            del out[i:i + rng.randint(1, 8)]
        elif kind == "cut":
            del out[i:]
        else:
            at = max(out.find(b"MTrk", i), 0)
            out[at + 4:at + 8] = bytes(rng.randrange(256) for _ in range(4))
    return bytes(out)


CHILD = """
import sys, symusic
for line in sys.stdin:
    print(line.strip(), flush=True)
    try:
        symusic.Score.from_midi(open(line.strip(), 'rb').read())
    except Exception:
        pass
"""


def crashes(paths: list[Path]) -> list[str]:
    """Files on which symusic's parser takes its process down (a signal, not an exception)."""
    found, i = [], 0
    while i < len(paths):
        child = subprocess.run([sys.executable, "-c", CHILD], input="\n".join(map(str, paths[i:])) + "\n",
                               capture_output=True, text=True)
        if child.returncode == 0:
            break
        seen = child.stdout.split()
        last = seen[-1] if seen else str(paths[i])
        found.append(f"{last} (exit {child.returncode})")
        i = [str(p) for p in paths].index(last) + 1
    return found


def fuzz(folders: list[Path], count: int, seed: int = 0) -> dict:
    sources = sorted(p for folder in folders for p in folder.rglob("*.mid") if p.stat().st_size > 100)
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    different = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(count):
            source = rng.choice(sources).read_bytes()
            path = Path(tmp) / f"fuzz-{i:05d}.mid"
            path.write_bytes(mutate(source[:rng.choice([2000, 20000, len(source)])], rng))
            paths.append(path)
        crashed = crashes(paths)
        for path in paths:
            data = path.read_bytes()
            slow, _ = outcome(data, fast=False)
            if midi_fast.read(data) is None:
                counts["declined (pretty_midi reads)"] += 1
                continue
            fast, _ = outcome(data)
            if isinstance(slow, str) and isinstance(fast, str):
                counts["both refuse"] += 1
            elif isinstance(slow, str):
                counts["fast reads, pretty_midi refuses"] += 1
            elif equal(fast, slow):
                counts["same notes"] += 1
            else:
                counts["DIFFERENT notes"] += 1
                different.append(path.name)
    return {"files": count, "symusic_crashes": crashed, "counts": dict(counts), "different": different}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--fuzz", type=int, default=0, help="damaged files to compare (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = {"corpus": corpus(args.data), "long_file": long_file()}
    if args.fuzz:
        result["fuzz"] = fuzz(args.data, args.fuzz)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    bad = result["corpus"]["different"] or (args.fuzz and (result["fuzz"]["different"] or result["fuzz"]["symusic_crashes"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

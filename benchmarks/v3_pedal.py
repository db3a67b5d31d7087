"""How much the sustain pedal (CC64) lengthens the notes of a corpus: key-down durations (what
mpx reads by default) against sounding durations (`read_notes(pedal=True)`, the rule of
runtime/pedal.py: a note held by the pedal lasts until the pedal lifts or its key is struck
again, as Magenta's sustain handling does). Measured on a sample of files spread over the
sorted file list (every split); also the sounding-notes store of the v3 experiments
(benchmarks/v3_experiment.py --pedal).

    python benchmarks/v3_pedal.py --data ../shared/data/asap --files 60 [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from mpx.runtime.midi import read_notes
from mpx.runtime.pedal import DOWN


def has_pedal(path: Path) -> tuple[bool, bool]:
    """(the pedal is pressed in an instrument with notes, it is down from the first note to
    the end)."""
    import pretty_midi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        midi = pretty_midi.PrettyMIDI(str(path))
    ccs = sorted((c for i in midi.instruments if not i.is_drum and i.notes for c in i.control_changes if c.number == 64),
                 key=lambda c: c.time)
    first = min((n.start for i in midi.instruments for n in i.notes), default=0.0)
    whole = bool(ccs) and ccs[0].time <= first and ccs[0].value >= DOWN and all(c.value >= DOWN for c in ccs)
    return any(c.value >= DOWN for c in ccs), whole


def paired(key_down: np.ndarray, sounding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The durations of the notes both readings hold (matched by onset and pitch: the pedal
    reading drops a note its key's next strike ends at its own onset)."""
    def keyed(notes: np.ndarray) -> dict[tuple[int, int], float]:
        onsets = np.round(np.cumsum(notes[:, 1].astype(np.float64)) * 1e5).astype(np.int64)
        return {(int(t), int(p)): float(d) for t, p, d in zip(onsets, notes[:, 0], notes[:, 2])}
    a, b = keyed(key_down), keyed(sounding)
    both = sorted(set(a) & set(b))
    return np.array([a[k] for k in both]), np.array([b[k] for k in both])


def sounding_store(files: list[Path], keys: list[str], cache: Path) -> list[np.ndarray]:
    """Every file's sounding notes (read_notes(pedal=True)), parsed once into an .npz cache
    (keyed by `keys`, the files' content keys: names repeat across folders)."""
    if cache.is_file():
        held = np.load(cache)
        if all(k in held for k in keys):
            return [held[k] for k in keys]
    notes = [read_notes(f, pedal=True) for f in files]
    np.savez(cache, **dict(zip(keys, notes)))
    return notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--files", type=int, default=60)
    p.add_argument("--json")
    args = p.parse_args()
    files = sorted(Path(args.data).rglob("*.mid"))
    files = [files[int(i * len(files) / args.files)] for i in range(min(args.files, len(files)))]
    with_pedal, held_whole, key_down, sounding, counts = 0, 0, [], [], [0, 0]
    for f in files:
        present, whole = has_pedal(f)
        with_pedal += present
        held_whole += whole
        kd, so = read_notes(f), read_notes(f, pedal=True)
        counts[0] += len(kd)
        counts[1] += len(so)
        a, b = paired(kd, so)
        key_down.append(a)
        sounding.append(b)
    kd, so = np.concatenate(key_down), np.concatenate(sounding)
    longer = so > kd + 1e-6
    result = {"files": len(files), "files_with_pedal": int(with_pedal), "pedal_held_from_start_to_end": int(held_whole),
              "notes_key_down": int(counts[0]), "notes_sounding": int(counts[1]), "notes_paired": int(len(kd)),
              "median_key_down_s": float(np.median(kd)), "median_sounding_s": float(np.median(so)),
              "mean_key_down_s": float(kd.mean()), "mean_sounding_s": float(so.mean()),
              "share_lengthened": float(np.mean(longer)),
              "median_ratio_of_lengthened": float(np.median(so[longer] / np.maximum(kd[longer], 1e-3)))}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

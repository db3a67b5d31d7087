"""How much the sustain pedal (CC64) lengthens the notes of a corpus: key-down durations (what
mpx reads today) against sounding durations (a note held by the pedal lasts until the pedal
lifts or its key is struck again, as Magenta's sustain handling does). A prototype for the
codec option of contract v3; measured on a sample of files.

    python benchmarks/v3_pedal.py --data ../shared/data/asap --files 120 [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pretty_midi

PEDAL_DOWN = 64  # CC64 value at or above which the pedal is down (the MIDI convention)


def pedal_intervals(instrument: pretty_midi.Instrument) -> list[tuple[float, float]]:
    """(down, up) times of the sustain pedal; a pedal still down at the end lasts to infinity."""
    out, down = [], None
    for cc in sorted((c for c in instrument.control_changes if c.number == 64), key=lambda c: c.time):
        if cc.value >= PEDAL_DOWN and down is None:
            down = cc.time
        elif cc.value < PEDAL_DOWN and down is not None:
            out.append((down, cc.time))
            down = None
    if down is not None:
        out.append((down, float("inf")))
    return out


def sounding_ends(notes: list[pretty_midi.Note], pedal: list[tuple[float, float]]) -> np.ndarray:
    """Each note's sounding end: its key-up, or, when the pedal is down then, the pedal's lift;
    never past the next onset of the same key; a pedal held to the end ends at the file's last
    key-up."""
    ends = np.array([n.end for n in notes], np.float64)
    last = max((n.end for n in notes), default=0.0)
    out = ends.copy()
    for i, n in enumerate(notes):
        for down, up in pedal:
            if down <= n.end < up:
                out[i] = max(n.end, min(up, last))
                break
    by_pitch: dict[int, list[int]] = {}
    for i in np.argsort([n.start for n in notes], kind="stable"):
        by_pitch.setdefault(notes[i].pitch, []).append(i)
    for idx in by_pitch.values():
        for a, b in zip(idx[:-1], idx[1:]):
            out[a] = min(out[a], max(notes[b].start, notes[a].end))
    return out


def read_sounding(path: str | Path) -> np.ndarray:
    """A MIDI file's notes [N, 4] as mpx reads them, with sounding durations (pedal applied)."""
    from mpx.runtime.midi import notes_from_events
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        midi = pretty_midi.PrettyMIDI(str(path))
    rows = []
    for inst in midi.instruments:
        if inst.is_drum or not inst.notes:
            continue
        ends = sounding_ends(inst.notes, pedal_intervals(inst))
        rows.extend((n.pitch, n.start, end, n.velocity) for n, end in zip(inst.notes, ends))
    pitches, starts, ends, velocities = (np.asarray(c, np.float64) for c in zip(*rows))
    return notes_from_events(pitches, starts, ends, velocities)


def sounding_store(files: list[Path], keys: list[str], cache: Path) -> list[np.ndarray]:
    """Every file's sounding notes, parsed once into an .npz cache (keyed by `keys`, the files'
    content keys: names repeat across folders)."""
    if cache.is_file():
        held = np.load(cache)
        if all(k in held for k in keys):
            return [held[k] for k in keys]
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(2) as pool:
        notes = list(pool.map(read_sounding, files, chunksize=8))
    np.savez(cache, **dict(zip(keys, notes)))
    return notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--files", type=int, default=120)
    p.add_argument("--json")
    args = p.parse_args()
    files = sorted(Path(args.data).rglob("*.mid"))
    files = [files[int(i * len(files) / args.files)] for i in range(min(args.files, len(files)))]
    with_pedal, key_down, sounding, held_whole = 0, [], [], 0
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            midi = pretty_midi.PrettyMIDI(str(f))
        for inst in midi.instruments:
            if inst.is_drum or not inst.notes:
                continue
            pedal = pedal_intervals(inst)
            with_pedal += bool(pedal)
            held_whole += any(up == float("inf") and down <= inst.notes[0].start for down, up in pedal)
            starts = np.array([n.start for n in inst.notes])
            key_down.append(np.array([n.end for n in inst.notes]) - starts)
            sounding.append(sounding_ends(inst.notes, pedal) - starts)
    kd, so = np.concatenate(key_down), np.concatenate(sounding)
    result = {"files": len(files), "instruments_with_pedal": with_pedal, "pedal_held_from_start_to_end": held_whole,
              "notes": int(len(kd)), "median_key_down_s": float(np.median(kd)), "median_sounding_s": float(np.median(so)),
              "mean_key_down_s": float(kd.mean()), "mean_sounding_s": float(so.mean()),
              "share_lengthened": float(np.mean(so > kd + 1e-6)),
              "median_ratio_of_lengthened": float(np.median(so[so > kd + 1e-6] / np.maximum(kd[so > kd + 1e-6], 1e-3)))}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""A Python reference of the contract-v2 generation protocol, for the JavaScript consumers' tests.

It runs the ONNX graph with onnxruntime directly and draws the uniforms from the numpy
SplitMix64 of the contract (CONTRACT_V2.md), so the web page and the Node script are checked
against the contract itself, not against each other. `mpx run` will replace it once the runtime
speaks contract v2; until then this is the one Python implementation the tests trust.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "artifacts" / "music_producter.onnx"
SEED_MIDI = ROOT / "artifacts" / "seed.mid"
V2_INPUTS = ("notes", "h0", "c0", "uniforms", "temperature", "top_p")

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray | int) -> np.ndarray:
    """SplitMix64's output function on uint64, wrapping modulo 2^64."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, stream: int, note: int, width: int = 8) -> np.ndarray:
    """float32 [width]: uniform(seed, stream, width * note + j) for j in 0..width-1."""
    with np.errstate(over="ignore"):
        key = splitmix64(splitmix64(np.uint64(seed)) + np.uint64(stream))
        counter = np.uint64(note) * np.uint64(width) + np.arange(width, dtype=np.uint64)
        bits = splitmix64(key + counter) >> np.uint64(40)
    return bits.astype(np.float32) * np.float32(2.0 ** -24)


def read_spec(model_path: str | os.PathLike[str]) -> dict:
    import onnxruntime as ort
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return json.loads(session.get_modelmeta().custom_metadata_map["mpx_spec"])


def contract_v2_model() -> Path:
    """The model the JS tests run: $MPX_WEB_MODEL, else the repo's artifact; skips (with the
    reason) when that file does not follow contract v2 yet."""
    import pytest
    import onnxruntime as ort

    path = Path(os.environ.get("MPX_WEB_MODEL") or DEFAULT_MODEL)
    if not path.is_file():
        pytest.skip(f"model {path} not found (set MPX_WEB_MODEL to a contract-v2 .onnx file)")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = json.loads(session.get_modelmeta().custom_metadata_map.get("mpx_spec", "{}"))
    names = tuple(i.name for i in session.get_inputs())
    # The prototype's stub spec has no spec_version; its inputs say which contract it follows.
    version = spec.get("spec_version", 2 if names == V2_INPUTS else 1)
    if version < 2 or names != V2_INPUTS:
        pytest.skip(f"{path} follows graph contract v{version} (inputs {', '.join(names)}), not v2 yet: "
                    "re-export it, or set MPX_WEB_MODEL to a contract-v2 .onnx file")
    return path


def read_midi_notes(path: str | os.PathLike[str]) -> np.ndarray:
    """MIDI -> float32 [N, 4] (pitch, step, duration, velocity) with pretty_midi: non-drum
    instruments merged, ordered by start, pitch, end; differences in float64, then float32."""
    import pretty_midi
    with warnings.catch_warnings():
        # pretty_midi warns about tempo events off track 0 (and ignores them, as the JS does).
        warnings.simplefilter("ignore", RuntimeWarning)
        midi = pretty_midi.PrettyMIDI(str(path))
    notes = [n for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    pitches = np.array([n.pitch for n in notes])
    velocities = np.array([n.velocity for n in notes])
    order = np.lexsort((ends, pitches, starts))
    starts, ends, pitches, velocities = starts[order], ends[order], pitches[order], velocities[order]
    steps = np.diff(starts, prepend=starts[0])
    return np.stack([pitches, steps, ends - starts, velocities], axis=1).astype(np.float32)


def _four(value: float | list[float]) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float32), (4,)).copy()


def reference_notes(model_path: str | os.PathLike[str], primer_notes: np.ndarray, seed: int, n: int,
                    temperature: float | list[float], top_p: float | list[float]) -> np.ndarray:
    """Generate n notes float32 [n, 4] by the protocol: the last seq_len notes of primer_notes
    prime a zero state in one call (note 0), then one call per note carries (h, c)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    spec = json.loads(session.get_modelmeta().custom_metadata_map["mpx_spec"])
    layers, hidden = spec["config"]["layers"], spec["config"]["hidden"]
    primer = np.asarray(primer_notes, dtype=np.float32)[-spec["seq_len"]:]
    state = np.zeros((layers, 1, hidden), np.float32)
    feed = {"notes": primer[None], "h0": state, "c0": state,
            "temperature": _four(temperature), "top_p": _four(top_p)}
    out = np.zeros((n, 4), np.float32)
    for i in range(n):
        feed["uniforms"] = uniforms(seed, 0, i)[None]
        note, h, c = session.run(["next_note", "hn", "cn"], feed)
        out[i] = note[0]
        feed.update(notes=note[:, None, :], h0=h, c0=c)
    return out

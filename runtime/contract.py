"""The graph contract, declared once: what every artifact takes and returns.

The exporters, the backends, `mpx info`, the tests and the README's contract table all read
these declarations; nobody spells a graph name, an axis or an output position anywhere else.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

CONTRACT_VERSION = 1

FEATURES = ("pitch", "step", "duration")  # one note, in this order, float32
VOCAB = 128                               # MIDI pitches 0..127

# Axis names per input and output, by position. "batch" and "time" are dynamic everywhere;
# the others are fixed by the model ("layers", "hidden") or by the contract.
INPUTS: dict[str, tuple[str, ...]] = {
    "notes": ("batch", "time", "feature"),
    "h0": ("layers", "batch", "hidden"),
    "c0": ("layers", "batch", "hidden"),
}
OUTPUTS: dict[str, tuple[str, ...]] = {
    "pitch_logits": ("batch", "time", "vocab"),
    "step": ("batch", "time"),
    "duration": ("batch", "time"),
    "hn": ("layers", "batch", "hidden"),
    "cn": ("layers", "batch", "hidden"),
}
DYNAMIC_AXES = ("batch", "time")
FIXED_AXES = {"feature": len(FEATURES), "vocab": VOCAB}

MEANING = {
    "notes": "raw notes: pitch 0..127, step and duration in seconds; the graph does its own input encoding",
    "h0": "LSTM state; zeros start a sequence",
    "c0": "LSTM state; zeros start a sequence",
    "pitch_logits": "logits (not probabilities) for the next note's pitch at every position",
    "step": "next note's step (seconds), unclipped",
    "duration": "next note's duration (seconds), unclipped",
    "hn": "state after the last position",
    "cn": "state after the last position",
}


class Outputs(NamedTuple):
    """What one graph call returns, by name; every backend returns this."""

    pitch_logits: np.ndarray
    step: np.ndarray
    duration: np.ndarray
    hn: np.ndarray
    cn: np.ndarray

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hn, self.cn


assert Outputs._fields == tuple(OUTPUTS)

# Where artifacts keep the spec (a JSON record, runtime/spec.py).
SPEC_KEY = "mpx_spec"                    # ONNX metadata_props key, safetensors metadata key
TORCHSCRIPT_SPEC_FILE = "mpx_spec.json"  # TorchScript archive extra file
TORCHSCRIPT_METHODS = ("forward", "zero_state")


def shape(axes: tuple[str, ...], sizes: dict[str, int | str] | None = None) -> list[int | str]:
    """Axis names -> sizes where they are fixed (by the contract or `sizes`), names where dynamic."""
    known = {**FIXED_AXES, **(sizes or {})}
    return [known.get(axis, axis) for axis in axes]


def dynamic_axes() -> dict[str, dict[int, str]]:
    """{name: {axis index: axis name}} of the dynamic axes, as exporters take them."""
    return {name: {i: axis for i, axis in enumerate(axes) if axis in DYNAMIC_AXES}
            for name, axes in {**INPUTS, **OUTPUTS}.items()}


SYMBOLS: dict[str, int | str] = {"batch": "B", "time": "T", "layers": "L", "hidden": "H"}


def markdown_table() -> str:
    """The README's contract table, generated from the declarations above."""
    rows = ["| name | shape | meaning |", "|---|---|---|"]
    for side, names in (("in", INPUTS), ("out", OUTPUTS)):
        for name, axes in names.items():
            dims = ", ".join(str(d) for d in shape(axes, SYMBOLS))
            rows.append(f"| {side} `{name}` | [{dims}] | {MEANING[name]} |")
    return "\n".join(rows)

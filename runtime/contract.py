"""The graph contract, declared once: what every artifact takes and returns.

The exporters, the backends, `mpx info`, the tests and the README's contract table all read
these declarations; nobody spells a graph name, an axis or an output position anywhere else.

Contract v3: the artifact is the whole generator. One call runs the LSTM over `notes` and draws
the next note as one chain of decisions (its attributes one after the other, in the model's
`order`, each conditioned on the ones before it), with the uniform random numbers, the per-row
sampling parameters and controls it is given; `given` fixes attributes of the next note instead
of drawing them. `logits` are the per-position distributions (for scoring and parity): row t,
attribute a is conditioned on the attributes of note t + 1 that come before a in the chain, read
from notes[:, t + 1] for t < T - 1 and from next_note (given or drawn) for the last row, so a
caller that passes the real next note as `given` has every row teacher-forced.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .controls import C as CONTROLS, NOT_GIVEN

CONTRACT_VERSION = 3

FEATURES = ("pitch", "step", "duration", "velocity")  # one note, in this order, float32
ATTRIBUTES = FEATURES       # every attribute of a note is a distribution over bins
VOCAB = 128                 # MIDI pitches 0..127; also the padded width of every attribute's bins
UNIFORMS = 2 * len(ATTRIBUTES)  # per note: one draw to choose each bin, one to place the value in it
LOGIT_PAD = -1e4            # logits past an attribute's bin count: probability 0 after a softmax

# Axis names per input and output, by position. "batch" and "time" are dynamic everywhere;
# the others are fixed by the model ("layers", "hidden") or by the contract.
INPUTS: dict[str, tuple[str, ...]] = {
    "notes": ("batch", "time", "feature"),
    "h0": ("layers", "batch", "hidden"),
    "c0": ("layers", "batch", "hidden"),
    "uniforms": ("batch", "uniform"),
    "temperature": ("batch", "attribute"),
    "top_p": ("batch", "attribute"),
    "controls": ("batch", "control"),
    "given": ("batch", "feature"),
}
OUTPUTS: dict[str, tuple[str, ...]] = {
    "next_note": ("batch", "feature"),
    "hn": ("layers", "batch", "hidden"),
    "cn": ("layers", "batch", "hidden"),
    "logits": ("batch", "time", "attribute", "bin"),
}
DYNAMIC_AXES = ("batch", "time")
FIXED_AXES = {"feature": len(FEATURES), "attribute": len(ATTRIBUTES), "bin": VOCAB, "uniform": UNIFORMS,
              "control": CONTROLS}

MEANING = {
    "notes": "previous notes, raw: pitch 0..127, step and duration in seconds, velocity 1..127",
    "h0": "LSTM state; zeros start a sequence",
    "c0": "LSTM state; zeros start a sequence",
    "uniforms": "uniform draws in [0, 1): columns 0-3 choose the bin of pitch, step, duration, "
                "velocity; columns 4-7 place the value inside the chosen bin",
    "temperature": "per row and attribute (pitch, step, duration, velocity), >= 0; 0 = greedy "
                   "(the likeliest bin, its centre)",
    "top_p": "per row and attribute, nucleus mass in (0, 1] (among the 16 likeliest bins); 1 = off",
    "controls": "per row, musical summaries the next notes follow (runtime/controls.py: density, "
                "chord_share, pitch_mean, pitch_spread, velocity_mean, duration_median, pc0..pc11); "
                "negative = not given (the model's learned default)",
    "given": "per row, attributes of the next note fixed by the caller (pitch, step, duration, "
             "velocity); negative = the graph draws it",
    "next_note": "the next note (pitch, step, duration, velocity): the given attributes, the others "
                 "drawn in the chain order after the last position",
    "hn": "state after the last position: feed it back as h0",
    "cn": "state after the last position: feed it back as c0",
    "logits": "per position and attribute, unnormalised log-probabilities of the next note's bin, "
              "given the attributes before it in the chain (row t < T-1: notes[t+1]'s; last row: "
              f"next_note's); entries past an attribute's bin count are {LOGIT_PAD:g}",
}


class Outputs(NamedTuple):
    """What one graph call returns, by name; every backend returns this."""

    next_note: np.ndarray
    hn: np.ndarray
    cn: np.ndarray
    logits: np.ndarray

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hn, self.cn


assert Outputs._fields == tuple(OUTPUTS)

# Where artifacts keep the spec (a JSON record, runtime/spec.py); runtime/formats.py says which
# format keeps it where.
SPEC_KEY = "mpx_spec"                    # ONNX metadata_props, safetensors metadata, AOTInductor metadata
TORCHSCRIPT_SPEC_FILE = "mpx_spec.json"  # TorchScript archive extra file
PT2_SPEC_FILE = "mpx_spec.json"          # torch.export archive extra file
TIME_AXIS_KEY = "mpx_time_axis"          # pt2 extra file / AOTInductor metadata: "dynamic", or "1"
                                         # when the export fixed T to one note
TORCHSCRIPT_METHODS = ("forward", "zero_state")


def shape(axes: tuple[str, ...], sizes: dict[str, int | str] | None = None) -> list[int | str]:
    """Axis names -> sizes where they are fixed (by the contract or `sizes`), names where dynamic."""
    known = {**FIXED_AXES, **(sizes or {})}
    return [known.get(axis, axis) for axis in axes]


def dynamic_axes() -> dict[str, dict[int, str]]:
    """{name: {axis index: axis name}} of the dynamic axes, as exporters take them."""
    return {name: {i: axis for i, axis in enumerate(axes) if axis in DYNAMIC_AXES}
            for name, axes in {**INPUTS, **OUTPUTS}.items()}


def dynamic_shapes(dims: dict[str, object]) -> tuple[dict[int, object] | None, ...]:
    """torch.export's `dynamic_shapes` for the inputs, in order: {axis index: dims[axis name]}
    for each dynamic axis named in `dims` (torch.export.Dim objects; an axis left out of `dims`
    is exported at the example's size), None for an input with none."""
    shapes = []
    for axes in INPUTS.values():
        named = {i: dims[axis] for i, axis in enumerate(axes) if axis in DYNAMIC_AXES and axis in dims}
        shapes.append(named or None)
    return tuple(shapes)


# One note any exporter may trace with: middle C, a quarter of a second after the previous one,
# held half a second, mezzo-forte. Exports follow shapes, not values (the graph has no control
# flow), so one valid note repeated serves every example.
EXAMPLE_NOTE = (60.0, 0.25, 0.5, 80.0)


def example_inputs(layers: int, hidden: int, batch: int = 2, time: int = 5,
                   temperature: tuple[float, ...] = (1.0,) * len(ATTRIBUTES),
                   top_p: tuple[float, ...] = (1.0,) * len(ATTRIBUTES)) -> tuple[np.ndarray, ...]:
    """The graph's inputs at a given batch and time size, in INPUTS order: contiguous float32
    arrays (AOTInductor bakes the example's strides into its kernels), zero state, uniforms of
    one half, the sampling parameters on every row, no control and no attribute given. What
    every exporter traces with and every shape check feeds."""
    notes = np.ascontiguousarray(np.broadcast_to(np.float32(EXAMPLE_NOTE), (batch, time, len(FEATURES))))
    state = np.zeros((layers, batch, hidden), np.float32)

    def rows(values: tuple[float, ...]) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(np.float32(values), (batch, len(ATTRIBUTES))))

    return (notes, state, state.copy(), np.full((batch, UNIFORMS), 0.5, np.float32), rows(temperature),
            rows(top_p), np.full((batch, CONTROLS), NOT_GIVEN, np.float32),
            np.full((batch, len(FEATURES)), NOT_GIVEN, np.float32))


SYMBOLS: dict[str, int | str] = {"batch": "B", "time": "T", "layers": "L", "hidden": "H", "control": "C"}


def markdown_table() -> str:
    """The README's contract table, generated from the declarations above."""
    rows = ["| name | shape | meaning |", "|---|---|---|"]
    for side, names in (("in", INPUTS), ("out", OUTPUTS)):
        for name, axes in names.items():
            dims = ", ".join(str(d) for d in shape(axes, SYMBOLS))
            rows.append(f"| {side} `{name}` | [{dims}] | {MEANING[name]} |")
    return "\n".join(rows)

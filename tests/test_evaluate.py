"""mpx eval's arithmetic, on hand-made inputs where the answer is known, and its batched
stateful pass against the plain one (one file per call)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpx.runtime import bins
from mpx.runtime.backends import Checked, zero_state
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import Outputs
from mpx.runtime.spec import ModelSpec
from mpx.train.evaluate import Totals, evaluate_stateful, evaluate_window, scoring_inputs, windows

CONFIG = ModelConfig(hidden=2, embedding=2, step_bins=8, duration_bins=8, velocity_bins=4)


def test_windows_are_every_seq_len_window_and_the_note_after_it() -> None:
    rng = np.random.default_rng(0)
    notes = [rng.random((n, 4)).astype(np.float32) for n in (10, 26, 27, 500, 3, 1000)]
    for stride in (1, 3):
        for batch in (7, 5000):
            got = list(windows(notes, 25, batch, stride))
            expected = [(seq[i:i + 25], seq[i + 25]) for seq in notes for i in range(0, len(seq) - 25, stride)]
            assert all(len(x) == batch for x, _ in got[:-1])
            np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), np.stack([e[0] for e in expected]))
            np.testing.assert_array_equal(np.concatenate([y for _, y in got]), np.stack([e[1] for e in expected]))


class EchoBackend(Checked):
    """Predicts the input note again: probability p on the current note's bin of each attribute."""

    name = "echo"

    def __init__(self, p: float) -> None:
        self.spec = ModelSpec(config=CONFIG, seq_len=4)
        self.p = p

    def call(self, notes, h, c, uniforms, temperature, top_p, controls, given):  # type: ignore[no-untyped-def]
        b, t, _ = notes.shape
        logits = np.full((b, t, 4, 128), -1e4, np.float32)
        current = bins.index(CONFIG, notes)
        for a, n in enumerate(bins.counts(CONFIG)):
            probs = np.full((b, t, n), (1 - self.p) / (n - 1))
            np.put_along_axis(probs, current[..., a:a + 1], self.p, axis=-1)
            logits[..., a, :n] = np.log(probs)
        return Outputs(notes[:, -1], h, c, logits)


def test_metrics_match_hand_computation() -> None:
    seq = np.array([[60, 0.1, 0.5, 80], [60, 0.2, 0.5, 80], [62, 0.3, 0.5, 80], [62, 0.0, 0.5, 40],
                    [62, 0.1, 0.5, 40], [60, 0.2, 0.5, 80]], np.float32)
    backend = EchoBackend(p=0.6)
    stateful = evaluate_stateful(backend, [seq])
    assert stateful["predictions"] == 5
    targets = bins.index(CONFIG, seq)
    for a, (name, n) in enumerate(zip(("pitch", "step", "duration", "velocity"), bins.counts(CONFIG))):
        hits = [targets[i + 1, a] == targets[i, a] for i in range(5)]  # the echo is right when the bin repeats
        expected = -np.mean([math.log(0.6) if hit else math.log(0.4 / (n - 1)) for hit in hits])
        assert stateful[f"{name}_ce"] == pytest.approx(expected, rel=1e-6), name
        assert stateful[f"{name}_top1"] == pytest.approx(np.mean(hits))
    window = evaluate_window(backend, [seq])  # windows of 4 predict note 5 (a repeat) and note 6 (not)
    assert window["predictions"] == 2 and window["pitch_top1"] == pytest.approx(0.5)


def test_batched_stateful_pass_equals_one_call_per_file(tiny_checkpoint, midi_files) -> None:  # type: ignore[no-untyped-def]
    from mpx.runtime import load, read_notes
    backend = load(tiny_checkpoint).backend
    notes = [read_notes(f) for f in midi_files] + [read_notes(midi_files[0])[:3]]
    batched = evaluate_stateful(backend, notes, lanes=3, chunk=50)
    plain = Totals(bins.counts(backend.spec.config))
    for seq in notes:
        # the real last note given: every row teacher-forced, as the batched pass's chunks are
        out = backend.call(seq[None, :-1], *zero_state(backend.spec, 1), *scoring_inputs(1), seq[-1:])
        plain.add(out.logits[0], bins.index(backend.spec.config, seq[1:]))
    expected = plain.result()
    assert batched["predictions"] == expected["predictions"] == sum(len(n) - 1 for n in notes)
    for key, value in expected.items():
        assert batched[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key

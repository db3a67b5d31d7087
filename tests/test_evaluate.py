"""mpx eval's arithmetic, on hand-made inputs where the answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import Outputs
from mpx.runtime.spec import ModelSpec
from mpx.train.evaluate import evaluate_stateful, evaluate_window, windows


def test_windows_are_every_seq_len_window_and_the_note_after_it() -> None:
    rng = np.random.default_rng(0)
    notes = [rng.random((n, 3)).astype(np.float32) for n in (10, 26, 27, 500, 3, 1000)]
    for stride in (1, 3):
        for batch in (7, 5000):
            got = list(windows(notes, 25, batch, stride))
            expected = [(seq[i:i + 25], seq[i + 25]) for seq in notes for i in range(0, len(seq) - 25, stride)]
            assert all(len(x) == batch for x, _ in got[:-1])
            np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), np.stack([e[0] for e in expected]))
            np.testing.assert_array_equal(np.concatenate([y for _, y in got]), np.stack([e[1] for e in expected]))


class EchoBackend:
    """Predicts the input note itself: logits put mass p on the current pitch."""

    name = "echo"

    def __init__(self, p: float) -> None:
        self.spec = ModelSpec(config=ModelConfig(hidden=2), seq_len=4)
        self.p = p

    def step(self, notes, h, c):  # type: ignore[no-untyped-def]
        b, t, _ = notes.shape
        probs = np.full((b, t, 128), (1 - self.p) / 127)
        np.put_along_axis(probs, notes[..., :1].astype(int), self.p, axis=-1)
        return Outputs(np.log(probs).astype(np.float32), notes[..., 1] - 0.5, notes[..., 2], h, c)


def test_metrics_match_hand_computation() -> None:
    seq = np.array([[60, 0.1, 0.5], [60, 0.2, 0.5], [62, 0.3, 0.5], [62, 0.0, 0.5], [62, 0.1, 0.5], [60, 0.2, 0.5]],
                   np.float32)
    backend = EchoBackend(p=0.6)
    stateful = evaluate_stateful(backend, [seq])
    hits = [seq[i + 1, 0] == seq[i, 0] for i in range(5)]  # the echo is right when the pitch repeats
    expected_ce = -np.mean([math.log(0.6) if hit else math.log(0.4 / 127) for hit in hits])
    assert stateful["predictions"] == 5
    assert stateful["pitch_ce"] == pytest.approx(expected_ce, rel=1e-5)
    assert stateful["top1"] == pytest.approx(np.mean(hits))
    # step predictions are clipped at 0 before the error: max(step - 0.5, 0) = 0 here
    assert stateful["step_mae"] == pytest.approx(np.mean(seq[1:, 1]), rel=1e-5)
    assert stateful["duration_mae"] == pytest.approx(0.0, abs=1e-6)
    window = evaluate_window(backend, [seq])  # windows of 4 predict note 5 (a repeat) and note 6 (not)
    assert window["predictions"] == 2 and window["top1"] == pytest.approx(0.5)

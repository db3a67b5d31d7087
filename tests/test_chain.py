"""The v3 model (train/model.py, NoteLSTM): the chain inside one call, teacher forcing through
`given`, controls with their learned default, per-row sampling that follows its numpy
statement, and the same outputs from TorchScript and torch.export."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mpx.runtime import bins, controls as ctl  # noqa: E402
from mpx.runtime.config import ModelConfig  # noqa: E402
from mpx.runtime.contract import ATTRIBUTES  # noqa: E402
from mpx.train.model import NoteLSTM  # noqa: E402
from mpx.runtime import sampling as reference  # noqa: E402

A = len(ATTRIBUTES)
CONFIG = ModelConfig(hidden=32, embedding=8, head_hidden=16, step_bins=48, duration_bins=40, velocity_bins=16)


@pytest.fixture(scope="module")
def model() -> NoteLSTM:
    torch.manual_seed(0)
    m = NoteLSTM(CONFIG)
    with torch.no_grad():  # weights of a trained size, so distributions are not flat
        for p in m.parameters():
            p.mul_(4.0)
        m.out_bias[m.out_bias < -1000] = -1e4
    return m.eval()


def notes_of(rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    steps = rng.exponential(0.1, (batch, time)) * (rng.random((batch, time)) < 0.6)
    return np.stack([rng.integers(30, 90, (batch, time)), steps, rng.exponential(0.3, (batch, time)),
                     rng.integers(20, 110, (batch, time))], -1).astype(np.float32)


def inputs(model: NoteLSTM, rng: np.random.Generator, batch: int, time: int, **changes):
    h, c = model.zero_state(batch)
    out = {"notes": torch.from_numpy(notes_of(rng, batch, time)), "h0": h, "c0": c,
           "uniforms": torch.from_numpy(rng.random((batch, 8), dtype=np.float32)),
           "temperature": torch.ones(batch, A), "top_p": torch.ones(batch, A),
           "controls": torch.from_numpy(ctl.unset(batch)), "given": torch.full((batch, A), -1.0)}
    out.update(changes)
    return out


def test_given_attributes_are_kept_and_teacher_force_the_last_row(model: NoteLSTM) -> None:
    rng = np.random.default_rng(0)
    x = inputs(model, rng, 3, 6)
    seq = notes_of(rng, 3, 7)
    x["notes"] = torch.from_numpy(seq[:, :-1])
    x["given"] = torch.from_numpy(seq[:, -1])
    with torch.no_grad():
        note, _, _, logits = model(**x)
        targets = torch.from_numpy(bins.index(CONFIG, seq[:, 1:]))
        scored, _, _ = model.training_scores(x["notes"], x["h0"], x["c0"],
                                             torch.from_numpy(ctl.unset(3))[:, None].repeat(1, 6, 1), targets)
    assert torch.equal(note, x["given"])
    for a, n in enumerate(bins.counts(CONFIG)):
        torch.testing.assert_close(logits[:, :, a, :n], scored[a], rtol=1e-5, atol=1e-5)
        assert (logits[:, :, a, n:] == -1e4).all()


def test_each_head_sees_the_attributes_drawn_before_it(model: NoteLSTM) -> None:
    rng = np.random.default_rng(1)
    x = inputs(model, rng, 2, 1)
    first = ATTRIBUTES.index(CONFIG.order[0])
    later = ATTRIBUTES.index(CONFIG.order[1])
    runs = []
    for value in (0.0, 1.5):  # the first attribute of the chain given two ways
        given = torch.full((2, A), -1.0)
        given[:, first] = value
        with torch.no_grad():
            runs.append(model(**{**x, "given": given})[3][:, -1])
    assert torch.equal(runs[0][:, first], runs[1][:, first])     # its own distribution: unchanged
    assert not torch.equal(runs[0][:, later], runs[1][:, later])  # the next head's: conditioned


def test_a_control_not_given_reads_the_learned_default(model: NoteLSTM) -> None:
    with torch.no_grad():
        features = model.control_features(torch.from_numpy(ctl.unset(1)))
        torch.testing.assert_close(features[0], model.control_default)
        k = ctl.unset(1)
        k[0, 0] = 6.0
        features = model.control_features(torch.from_numpy(k))
    assert float(features[0, 0]) == pytest.approx(float(ctl.normalised(k)[0, 0]), rel=1e-5)


def test_rows_do_not_depend_on_each_other(model: NoteLSTM) -> None:
    rng = np.random.default_rng(2)
    x = inputs(model, rng, 4, 3)
    x["temperature"] = torch.tensor([[1.0] * 4, [0.0] * 4, [0.7, 1.2, 1.0, 0.5], [1.0] * 4])
    x["top_p"] = torch.tensor([[1.0] * 4, [1.0] * 4, [0.9, 0.5, 1.0, 0.8], [0.3] * 4])
    k = ctl.unset(4)
    k[1, 0], k[2, 6:] = 9.0, 1 / 12
    x["controls"] = torch.from_numpy(k)
    with torch.no_grad():
        together = model(**x)
        for r in range(4):
            alone = model(**{name: (t[:, r:r + 1] if name in ("h0", "c0") else t[r:r + 1]) for name, t in x.items()})
            assert torch.equal(alone[0], together[0][r:r + 1])
            torch.testing.assert_close(alone[3], together[3][r:r + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position", range(4))
def test_draws_follow_the_numpy_statement(model: NoteLSTM, position: int) -> None:
    rng = np.random.default_rng(3 + position)
    rows = 3000
    n = model.sizes[position]
    z = rng.normal(0, 3, (rows, n)).astype(np.float32)
    t = rng.choice([0.0, 0.5, 1.0, 1.7], rows).astype(np.float32)
    p = rng.choice([1.0, 0.9, 0.5, 0.1], rows).astype(np.float32)
    u = rng.random(rows, dtype=np.float32)
    view = (rows, 1, 1, 1)
    got = model.draw(torch.from_numpy(z).view(rows, 1, 1, n),
                     torch.from_numpy(1 / np.maximum(t, 1e-6)).view(view), torch.from_numpy(p).view(view),
                     torch.from_numpy((p < 1).astype(np.float32)).view(view),
                     torch.from_numpy(np.where(t > 0, u, 0).astype(np.float32)).view(view), position)
    assert np.array_equal(got.view(rows).numpy(), reference.draw(z, t, p, u))


def test_the_sampler_draws_the_distribution() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0, 1.5, 32).astype(np.float32)
    draws = reference.draw(np.tile(z, (200_000, 1)), np.ones(200_000), np.ones(200_000),
                           rng.random(200_000, dtype=np.float32))
    seen = np.bincount(draws, minlength=32) / len(draws)
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert np.abs(seen - expected).max() < 0.005
    nucleus = reference.draw(np.tile(z, (5000, 1)), np.ones(5000), np.full(5000, 0.5),
                             rng.random(5000, dtype=np.float32))
    order = np.argsort(-expected)
    smallest = order[:int(np.searchsorted(np.cumsum(expected[order]), 0.5) + 1)]
    assert set(np.unique(nucleus)) <= set(smallest.tolist())


def test_torchscript_gives_the_same_outputs(model: NoteLSTM) -> None:
    scripted = torch.jit.script(model)
    rng = np.random.default_rng(5)
    for batch, time in ((1, 1), (3, 7)):
        x = inputs(model, rng, batch, time)
        with torch.no_grad():
            for a, b in zip(model(**x), scripted(**x)):
                assert torch.equal(a, b)

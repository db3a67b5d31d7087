"""The generation session and the Generator under contract v3, on a tiny chain model run eagerly
(the bundled artifacts are v2 until a v3 model is trained: SWITCH-STATUS.md): per-row sampling
parameters and controls in one call, given attributes for one step, the primer's summaries as
the default controls, controls and a key through GenerationOptions and `mpx run`, and the numpy
statement of the sampling rule (runtime/sampling.py) against the graph's draws."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mpx.runtime import controls as ctl, sampling  # noqa: E402
from mpx.runtime.config import ModelConfig  # noqa: E402
from mpx.runtime.errors import OptionsError  # noqa: E402
from mpx.runtime.generate import GenerationOptions, Generator  # noqa: E402
from mpx.runtime.midi import read_notes  # noqa: E402
from mpx.runtime.session import Session  # noqa: E402
from mpx.runtime.spec import ModelSpec, Sampling  # noqa: E402
from mpx.train.eager import EagerBackend  # noqa: E402
from mpx.train.model import NoteLSTM  # noqa: E402

from conftest import ARTIFACTS, run_cli  # noqa: E402

CONFIG = ModelConfig(hidden=24, embedding=8, head_hidden=16, step_bins=32, duration_bins=32, velocity_bins=16)


class Counting(EagerBackend):
    """The eager backend, counting its graph calls."""

    calls = 0

    def call(self, *inputs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().call(*inputs)


@pytest.fixture(scope="module")
def backend() -> Counting:
    torch.manual_seed(0)
    model = NoteLSTM(CONFIG)
    with torch.no_grad():  # weights of a trained size, so the distributions are not flat
        for p in model.parameters():
            p.mul_(3.0)
        model.out_bias[model.out_bias < -1000] = -1e4
    return Counting(model, ModelSpec(config=CONFIG, seq_len=32))


@pytest.fixture(scope="module")
def primer() -> np.ndarray:
    return read_notes(ARTIFACTS / "seed.mid")[-32:]


SETTINGS = [Sampling(1.0, 1.0), Sampling((0.0, 1.0, 0.5, 1.0), (1.0, 0.9, 1.0, 0.5)), Sampling(1.3, 0.7)]


def alone(backend: Counting, primer: np.ndarray, n: int, stream: int, sampling_: Sampling,
          controls: dict[str, float | None]) -> np.ndarray:
    session = Session(backend, seed=7, streams=[stream], sampling=sampling_, controls=controls)
    session.prime(primer)
    return session.generate(n)[0]


def test_rows_of_different_settings_and_controls_step_in_one_call(backend: Counting, primer: np.ndarray) -> None:
    requested = [{}, {"density": 3.0}, {"velocity_mean": 40.0, "pitch_mean": 72.0}]
    session = Session(backend, 3, seed=7, streams=[0, 1, 2])
    session.prime(primer)
    for row, (setting, asked) in enumerate(zip(SETTINGS, requested)):
        session.set_sampling(setting, [row])
        session.set_controls(ctl.resolve(primer, asked), [row])
    first = session.step()  # the primer's last note: every row feeds one note from here on
    before = backend.calls
    together = np.concatenate([first[:, None], session.generate(11)], axis=1)
    assert backend.calls - before == 11  # one call per step, whatever the rows' settings
    for row, (setting, asked) in enumerate(zip(SETTINGS, requested)):
        np.testing.assert_allclose(together[row], alone(backend, primer, 12, row, setting, asked), rtol=1e-5, atol=1e-6)


def test_controls_default_to_the_primers_summaries(backend: Counting, primer: np.ndarray) -> None:
    session = Session(backend, 2, seed=1)
    session.prime(primer)
    np.testing.assert_array_equal(session.controls(1), ctl.resolve(primer))
    held = [ctl.CONTROLS.index(name) for name in ctl.HELD]
    assert (session.controls(0)[held] >= 0).all()  # the primer (>= 16 notes) is summarised
    asked = Session(backend, 1, seed=1, controls={"density": 3.0})
    asked.prime(primer)
    got = dict(zip(ctl.CONTROLS, asked.controls(0)))
    assert got["density"] == 3.0
    assert all(got[name] < 0 for name in ctl.family("density") if name != "density")  # its family released
    assert got["pitch_mean"] < 0  # the register is free unless asked for


def test_given_attributes_hold_for_one_step(backend: Counting, primer: np.ndarray) -> None:
    session = Session(backend, 2, seed=3)
    session.prime(primer)
    session.give([[-1, 0.5, -1, -1], [64, -1, -1, 100]])
    note = session.step()
    assert note[0, 1] == np.float32(0.5) and note[1, 0] == 64 and note[1, 3] == 100
    session.step()
    inputs, _ = session.last  # type: ignore[misc]
    assert (inputs[-1] < 0).all()  # nothing given at the following step
    with pytest.raises(OptionsError, match="pitch must be"):
        session.give([200, -1, -1, -1])
    with pytest.raises(OptionsError, match="given: 3 rows of values for 2 rows"):
        session.give(np.full((3, 4), -1.0))
    with pytest.raises(OptionsError, match=r"controls: rows \[5\] are not all among the session's 2"):
        session.set_controls(ctl.unset(), [5])
    with pytest.raises(OptionsError, match="controls: must hold 18 values per row"):
        session.set_controls([1.0, 2.0])


def test_taken_and_joined_rows_keep_their_settings_and_controls(backend: Counting, primer: np.ndarray) -> None:
    a = Session(backend, 2, seed=7, streams=[0, 1])
    a.prime(primer)
    a.set_sampling(SETTINGS[1], [1])
    a.set_controls(ctl.resolve(primer, {"density": 3.0}), [1])
    a.generate(3)
    moved = a.take([int(a.ids[1])])
    b = Session(backend, 1, seed=7, streams=[2])
    b.prime(primer)
    b.generate(3)
    b.join(moved)
    assert b.sampling(1) == SETTINGS[1]
    np.testing.assert_array_equal(b.controls(1), ctl.resolve(primer, {"density": 3.0}))
    later = b.generate(5)[1]
    whole = alone(backend, primer, 8, 1, SETTINGS[1], {"density": 3.0})
    np.testing.assert_allclose(later, whole[3:], rtol=1e-5, atol=1e-6)


def test_the_numpy_rule_draws_what_the_graph_draws(backend: Counting) -> None:
    rng = np.random.default_rng(0)
    rows = 256
    notes = np.stack([rng.integers(30, 90, (rows, 3)), rng.exponential(0.1, (rows, 3)),
                      rng.exponential(0.3, (rows, 3)), rng.integers(20, 110, (rows, 3))], -1).astype(np.float32)
    h = np.zeros((1, rows, CONFIG.hidden), np.float32)
    u = rng.random((rows, 8), dtype=np.float32)
    t = rng.choice([0.0, 0.6, 1.0, 1.5], (rows, 4)).astype(np.float32)
    p = rng.choice([1.0, 0.95, 0.7, 0.3], (rows, 4)).astype(np.float32)
    controls = np.where(rng.random((rows, ctl.C)) < 0.5, ctl.unset(rows), ctl.resolve(notes[0]))
    out = backend.run(notes, h, h, u, t, p, controls.astype(np.float32), np.full((rows, 4), -1, np.float32))
    expected = sampling.sample(out.logits[:, -1], u, t, p, CONFIG)
    close = sampling.margin(out.logits[:, -1], u, t, p, (128, 32, 32, 16)) < 1e-5  # a near-tie may flip
    assert close.mean() < 0.05
    same = np.isclose(out.next_note, expected, rtol=1e-5, atol=1e-6) | close
    assert same.all(), np.argwhere(~same)[:5]


def test_generation_options_take_controls_and_a_key(backend: Counting, primer: np.ndarray) -> None:
    options = GenerationOptions(notes=4, seed=5, key="D minor", controls={"density": 4.0})
    asked = options.requested_controls()
    assert asked["density"] == 4.0
    np.testing.assert_array_equal([asked[f"pc{k}"] for k in range(12)], ctl.key_profile("D minor"))
    generator = Generator(backend)
    session = generator.session(options)
    session.prime(primer)
    np.testing.assert_array_equal(session.controls(0), ctl.resolve(primer, asked))
    assert generator.generate(primer, options=options).shape == (4, 4)
    for bad, message in (({"key": "H major"}, "is not a key"), ({"controls": {"density": -1e9, "tempo": 1}}, "unknown tempo"),
                         ({"controls": {"velocity_mean": 500.0}}, "velocity_mean 500 is out of range"),
                         ({"key": "C", "controls": {"pc0": 0.2}}, "pc0 cannot be given beside it")):
        with pytest.raises(OptionsError, match=message):
            GenerationOptions(**bad)  # type: ignore[arg-type]


@pytest.mark.slow
def test_mpx_run_follows_control_flags(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "take.csv"
    done = run_cli("run", str(ARTIFACTS / "seed.mid"), "--model", str(tiny_checkpoint), "--notes", "16",
                   "--seed", "3", "--density", "4", "--key", "D minor", "--velocity-mean", "50", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    bad = run_cli("run", str(ARTIFACTS / "seed.mid"), "--model", str(tiny_checkpoint), "--key", "H major",
                  "--out", str(tmp_path / "bad.csv"))
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "is not a key" in bad.stderr
    assert not (tmp_path / "bad.csv").exists()


def test_each_take_has_its_own_sampling_and_controls_in_one_call(backend: Counting, primer: np.ndarray) -> None:
    from mpx.runtime.generate import Take
    takes = (Take(), Take(temperature=0.0), Take(top_p=0.5, controls={"density": 3.0}, key="A minor"))
    options = GenerationOptions(notes=6, seed=7, num_outputs=3, controls={"velocity_mean": 50.0}, takes=takes)
    generator = Generator(backend)
    before = backend.calls
    together = generator.generate(primer, options=options)
    assert backend.calls - before == 1 + 6  # the primer's head once, then one call per note
    for i, take in enumerate(takes):
        asked = {"velocity_mean": 50.0, **(take.controls or {})}
        if take.key:
            asked.update(zip(ctl.PITCH_CLASSES, map(float, ctl.key_profile(take.key))))
        assert options.requested_controls(i) == asked
        setting = options.take_sampling(i, backend.spec.sampling)
        np.testing.assert_allclose(together[i], alone(backend, primer, 6, i, setting, asked), rtol=1e-5, atol=1e-6)
    for bad, message in (({"takes": (Take(),)}, "takes: 1 given for num_outputs 3"),
                         ({"takes": (Take(), Take(), Take(temperature=-1.0))}, "temperature"),
                         ({"takes": (Take(), Take(), Take(key="X"))}, "is not a key")):
        with pytest.raises(OptionsError, match=message):
            GenerationOptions(num_outputs=3, **bad)  # type: ignore[arg-type]

"""The generation session on the bundled ONNX model: rows that advance together, their input,
state and random streams, and rows moved between sessions as a server's batcher moves them."""
from __future__ import annotations

import numpy as np
import pytest

from mpx.runtime import controls, load, read_notes
from mpx.runtime.errors import OptionsError
from mpx.runtime.rng import uniforms
from mpx.runtime.session import Session
from mpx.runtime.spec import Sampling

from conftest import ARTIFACTS, graph_run


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    return load(None, "onnx", threads=1).backend


@pytest.fixture(scope="module")
def primer(backend) -> np.ndarray:  # type: ignore[no-untyped-def]
    return read_notes(ARTIFACTS / "seed.mid")[-backend.spec.seq_len:]


def alone(backend, primer: np.ndarray, n: int, seed: int, stream: int = 0,  # type: ignore[no-untyped-def]
          sampling: Sampling | None = None) -> np.ndarray:
    """Row `stream` of seed `seed` generated in a session of its own: [n, 4]."""
    session = Session(backend, seed=seed, streams=[stream], sampling=sampling)
    session.prime(primer)
    return session.generate(n)[0]


def assert_same_notes(a: np.ndarray, b: np.ndarray) -> None:
    """Pitch and velocity identical, times within float rounding (other batch sizes)."""
    np.testing.assert_array_equal(a[..., [0, 3]], b[..., [0, 3]])
    np.testing.assert_allclose(a[..., 1:3], b[..., 1:3], rtol=1e-5, atol=1e-6)


def test_a_session_is_the_documented_protocol(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """README, "Generation protocol": the primer in call 0, then one call per note with the note
    just made and the carried state, row r taking uniform(seed, r, 8 n + j)."""
    session = Session(backend, seed=3)
    session.prime(primer)
    got = session.generate(20)[0]
    spec = backend.spec
    x, (h, c) = primer[None], (np.zeros((spec.layers, 1, spec.hidden), np.float32),) * 2
    t, p = np.float32(spec.sampling.temperature), np.float32(spec.sampling.top_p)
    held = controls.resolve(primer)[None]  # v3: the primer's own summaries unless asked otherwise
    for n in range(20):
        out = graph_run(backend, x, h, c, uniforms(3, 1, n, 1)[0], t, p, controls=held)
        np.testing.assert_array_equal(got[n], out.next_note[0])
        x, h, c = out.next_note[:, None], out.hn, out.cn
    assert session.drawn.tolist() == [20] and session.seed == 3


def test_the_seed_is_chosen_once_and_repeats_the_run(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    first = Session(backend, rows=2)
    first.prime(primer)
    notes = first.generate(10)
    again = Session(backend, rows=2, seed=first.seed)
    again.prime(primer)
    np.testing.assert_array_equal(again.generate(10), notes)
    again.reset()  # back to note 0 of every row's stream
    again.prime(primer)
    np.testing.assert_array_equal(again.generate(10), notes)


def test_progress_is_reported_after_every_note(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []
    session = Session(backend, seed=0)
    session.prime(primer)
    session.generate(5, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_appended_notes_are_fed_with_the_state_carried(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Notes someone else played, appended between steps, are fed at the next call after the
    state of everything before them; a step that does not feed its note back leaves nothing
    pending."""
    played = primer[:3].copy()
    live = Session(backend, seed=5)
    live.prime(primer[:-3])
    live.append(primer[-3:])
    live.step(feed_back=False)   # draws a note the caller does not keep
    assert live.pending(0).shape == (0, 4)
    live.append(played)
    second = live.step()
    spec = backend.spec
    zeros = np.zeros((spec.layers, 1, spec.hidden), np.float32)
    t, p = np.float32(spec.sampling.temperature), np.float32(spec.sampling.top_p)
    held = controls.resolve(primer[:-3])[None]  # summaries of what was primed
    first = graph_run(backend, primer[None], zeros, zeros, uniforms(5, 1, 0, 1)[0], t, p, controls=held)
    want = graph_run(backend, played[None], first.hn, first.cn, uniforms(5, 1, 1, 1)[0], t, p, controls=held)
    np.testing.assert_array_equal(second, want.next_note)
    np.testing.assert_array_equal(live.pending(0), second)


def test_state_can_be_read_and_set(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """A state read from one session and set in another continues the same LSTM."""
    session = Session(backend, seed=1)
    session.prime(primer)
    note = session.step()
    saved = session.state
    session.step()
    other = Session(backend, seed=1)
    other.set_controls(session.controls(0)[None])
    other.state = saved
    other.append(note)
    other.step()
    # the chain's first link sees only the state and the note fed (the later links also see the
    # bins drawn before them, from each session's own uniforms)
    first = ("pitch", "step", "duration", "velocity").index(backend.spec.config.order[0])
    np.testing.assert_array_equal(other.last[1].logits[:, :, first], session.last[1].logits[:, :, first])  # type: ignore[index]
    with pytest.raises(OptionsError, match="state must be two arrays of shape"):
        other.state = (saved[0][:, :, :3], saved[1])


def test_k_rows_share_the_primer_and_draw_their_own_streams(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    session = Session(backend, rows=3, seed=9)
    session.prime(primer)
    notes = session.generate(30)
    for row in range(3):
        assert_same_notes(notes[row], alone(backend, primer, 30, seed=9, stream=row))
    assert len({tuple(r) for r in notes[:, :, 0]}) == 3


def test_rows_taken_out_and_joined_keep_their_notes(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """A server's batch: requests primed alone join a running batch at different points, one
    with other sampling parameters, one leaves; every row's notes are its notes alone."""
    warm = Sampling(1.2, 0.9)
    batch = Session(backend, rows=2, seed=4)
    batch.prime(primer)
    made: dict[int, list[np.ndarray]] = {int(i): [] for i in batch.ids}
    newcomers = {3: Session(backend, seed=11, sampling=warm), 6: Session(backend, seed=12)}
    for s, request in newcomers.items():
        request.prime(primer[-40 - s:])  # its own primer, of its own length, in its own calls
    leaver = int(batch.ids[0])
    for step in range(10):
        if step in newcomers:
            made[int(newcomers[step].ids[0])] = []
            batch.join(newcomers[step])
        if step == 8:
            gone = batch.take([leaver])
            assert gone.rows == 1 and batch.rows == 3 and gone.drawn.tolist() == [8]
        for row_id, note in zip(batch.ids, batch.step()):
            made[int(row_id)].append(note)
    assert made[leaver] and len(made[leaver]) == 8
    expected = {int(batch.ids[0]): alone(backend, primer, 10, seed=4, stream=1)}
    for s, seed in ((3, 11), (6, 12)):
        row_id = [i for i in made if len(made[i]) == 10 - s][0]
        expected[row_id] = alone(backend, primer[-40 - s:], 10 - s, seed=seed,
                                 sampling=warm if seed == 11 else None)
    expected[leaver] = alone(backend, primer, 8, seed=4, stream=0)
    for row_id, want in expected.items():
        assert_same_notes(np.stack(made[row_id]), want)


def test_mixed_settings_are_drawn_in_one_call(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Contract v3 takes temperature and top-p per row: rows of other settings share the call,
    and each row draws what it draws alone."""
    session = Session(backend, rows=3, seed=2)
    session.prime(primer)
    cold = Sampling((0.0, 0.5, 0.5, 0.5), 1.0)
    session.set_sampling(cold, rows=[1])
    notes = session.generate(12)
    assert session.last is not None  # the last step was one call
    assert_same_notes(notes[1], alone(backend, primer, 12, seed=2, stream=1, sampling=cold))
    assert_same_notes(notes[2], alone(backend, primer, 12, seed=2, stream=2))
    assert session.sampling(1) == cold


def test_window_mode_reruns_the_last_notes_from_a_zero_state(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    width = 16
    session = Session(backend, seed=6, window=width)
    session.prime(primer)
    got = session.generate(12)[0]
    window = primer[-width:]
    spec = backend.spec
    t, p = np.float32(spec.sampling.temperature), np.float32(spec.sampling.top_p)
    zeros = np.zeros((spec.layers, 1, spec.hidden), np.float32)
    held = controls.resolve(primer)[None]
    for n in range(12):
        note = graph_run(backend, window[None], zeros, zeros, uniforms(6, 1, n, 1)[0], t, p,
                         controls=held).next_note[0]
        np.testing.assert_array_equal(got[n], note)
        window = np.concatenate([window[1:], note[None]])
    np.testing.assert_array_equal(session.pending(0), window)


def test_bad_use_is_one_line(backend, primer: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    session = Session(backend, seed=0)
    with pytest.raises(OptionsError, match="no notes to feed: prime or append first"):
        session.step()
    with pytest.raises(OptionsError, match="primer: holds no notes"):
        session.prime(primer[:0])
    with pytest.raises(OptionsError, match="played: velocity must be 1..127"):
        session.append(np.float32([[60, 0.1, 0.2, 0]]), source="played")
    with pytest.raises(OptionsError, match="ids must be distinct ids"):
        session.take([-1])
    with pytest.raises(OptionsError, match="streams must give one stream per row"):
        Session(backend, rows=2, streams=[0])
    with pytest.raises(OptionsError, match="seed must be an integer 0..2\\^64-1"):
        Session(backend, seed=-1)
    session.take(list(session.ids))
    with pytest.raises(OptionsError, match="no rows to step"):
        session.step()

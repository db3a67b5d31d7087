"""Generation from the bundled ONNX model (torch-free tier): the portable random stream, the
graph's own sampling against the rule stated in numpy, the Generator's modes and options, and
no torch on the ONNX path."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mpx.runtime import GenerationOptions, bins, load, read_notes, sampling, uniforms, zero_state
from mpx.runtime.errors import OptionsError
from mpx.runtime.rng import UniformStream, splitmix64

from conftest import ARTIFACTS


@pytest.fixture(scope="module")
def generator():  # type: ignore[no-untyped-def]
    return load(None, "onnx", threads=1)


@pytest.fixture(scope="module")
def seed_notes() -> np.ndarray:
    return read_notes(ARTIFACTS / "seed.mid")


# -- the portable random stream -------------------------------------------------------------
def test_random_stream_matches_the_documented_test_vectors() -> None:
    # README, "Random stream": the numbers every consumer (C++, JavaScript) must reproduce
    assert int(splitmix64(0)) == 0xE220A8397B1DCDAF and int(splitmix64(1)) == 0x910A2DEC89025CC1
    np.testing.assert_array_equal(uniforms(0, 2, 0, 1)[0, 0], np.float32(
        [0.13870936632156372, 0.2582654356956482, 0.5748404264450073, 0.8156917095184326,
         0.005725681781768799, 0.7629507780075073, 0.47243988513946533, 0.264343798160553]))
    np.testing.assert_array_equal(uniforms(42, 1, 1000, 1)[0, 0], np.float32(
        [0.3530592918395996, 0.7287887930870056, 0.8649685978889465, 0.7453455328941345,
         0.9541337490081787, 0.827089786529541, 0.4979499578475952, 0.3364918828010559]))
    assert uniforms(2**64 - 1, 1, 0, 1)[0, 0, 0] == np.float32(0.9844383597373962)


def test_random_stream_is_counter_based() -> None:
    # the same numbers whatever the chunking, the number of streams or the starting note
    block = uniforms(7, 3, 0, 600)
    stream = UniformStream(7, 3)
    np.testing.assert_array_equal(np.stack([stream.next() for _ in range(600)]), block)
    np.testing.assert_array_equal(uniforms(7, 1, 0, 600)[:, 0], block[:, 0])
    np.testing.assert_array_equal(uniforms(7, 3, 250, 10), block[250:260])
    assert block.dtype == np.float32 and block.min() >= 0 and block.max() < 1
    # 24-bit uniforms: every value is k / 2^24 exactly
    assert np.all(block * 2**24 == np.round(block * 2**24))
    assert abs(block.mean() - 0.5) < 0.01


def test_rows_of_streams_keep_their_place_when_selected_and_joined() -> None:
    block = uniforms(7, 3, 0, 40)
    stream = UniformStream(7, 3)
    for _ in range(5):
        stream.next()
    picked = stream.select([2, 0])
    np.testing.assert_array_equal(picked.next(), block[5][[2, 0]])
    joined = UniformStream.joined([picked, UniformStream(9, [4], first_note=10)])
    both = joined.next()
    np.testing.assert_array_equal(both[:2], block[6][[2, 0]])
    np.testing.assert_array_equal(both[2], uniforms(9, 5, 10, 1)[0, 4])
    assert joined.notes.tolist() == [7, 7, 11]


# -- the graph's own sampling ---------------------------------------------------------------
def test_the_graph_samples_by_the_documented_rule(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    backend = generator.backend
    config = backend.spec.config
    x = np.stack([seed_notes[i:i + 20] for i in range(0, 600, 50)])
    for temperature, top_p in (((1, 1, 1, 1), (1, 1, 1, 1)), ((0.7, 1.3, 0.9, 1), (0.9, 0.8, 1, 0.5)),
                               ((0, 0, 0, 0), (1, 1, 1, 1)), ((1, 0, 2, 0), (0.6, 1, 0.95, 1))):
        u = rng.random((len(x), 8)).astype(np.float32)
        t, p = np.float32(temperature), np.float32(top_p)
        out = backend.run(x, *zero_state(backend.spec, len(x)), u, t, p)
        want = sampling.sample(out.logits[:, -1], u, t, p, config)
        near = sampling.margin(out.logits[:, -1], u, t, p, bins.counts(config)) < 1e-5
        assert not near.any()  # no draw here sits on a boundary where rounding decides
        np.testing.assert_array_equal(out.next_note[:, [0, 3]], want[:, [0, 3]])
        np.testing.assert_allclose(out.next_note[:, 1:3], want[:, 1:3], rtol=1e-5, atol=1e-6)


def test_the_rule_takes_sampling_parameters_per_row(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Contract v3 gives each row its own settings: the numpy rule already does."""
    backend = generator.backend
    x = np.stack([seed_notes[:20]] * 2)
    u = np.random.default_rng(1).random((2, 8)).astype(np.float32)
    out = backend.run(x, *zero_state(backend.spec, 2), u, np.ones(4, np.float32), np.ones(4, np.float32))
    rows = sampling.sample(out.logits[:, -1], u, np.float32([[1, 1, 1, 1], [0, 0, 0, 0]]), np.ones((2, 4)),
                           backend.spec.config)
    shared = [sampling.sample(out.logits[:, -1], u, np.float32([t] * 4), np.ones(4), backend.spec.config)[i]
              for i, t in enumerate((1, 0))]
    np.testing.assert_array_equal(rows, np.stack(shared))


def test_sampled_bins_follow_the_softmax_and_the_nucleus(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    backend = generator.backend
    n = 20000
    ones = np.ones(4, np.float32)
    primed = backend.run(seed_notes[None, :29], *zero_state(backend.spec, 1), np.zeros((1, 8), np.float32), ones, ones)
    # n rows in the primed state, each drawing the 30th note with its own uniforms
    x = np.repeat(seed_notes[None, 29:30], n, axis=0)
    h, c = (np.repeat(s, n, axis=1) for s in primed.state)
    u = np.random.default_rng(1).random((n, 8)).astype(np.float32)
    out = backend.run(x, h, c, u, ones, ones)
    logits = out.logits[0, -1, 0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    seen = np.bincount(out.next_note[:, 0].astype(int), minlength=128) / n
    assert np.abs(seen - probs).max() < 0.015
    nucleus = backend.run(x, h, c, u, ones, np.float32([0.5, 1, 1, 1]))
    ranked = np.argsort(-probs)
    smallest = ranked[: int(np.searchsorted(np.cumsum(probs[ranked]), 0.5)) + 1]
    assert set(np.unique(nucleus.next_note[:, 0]).astype(int)) <= set(smallest.tolist())


# -- the Generator --------------------------------------------------------------------------
def test_stream_yields_what_generate_returns(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    for mode in ("stateful", "window"):
        streamed = np.stack(list(generator.stream(seed_notes, 40, seed=3, mode=mode)))
        np.testing.assert_array_equal(streamed, generator.generate(seed_notes, 40, seed=3, mode=mode))
    batched = list(generator.stream(seed_notes, 5, seed=3, num_outputs=3))
    assert len(batched) == 5 and batched[0].shape == (3, 4)


def tutorial_window_loop(backend, primer: np.ndarray, n: int, seed: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The seed notebook's generation loop, re-implemented on an mpx graph: for every note, run
    the last seq_len notes from a zero state, take the note the graph samples (with the
    portable stream's uniforms), drop the oldest note, append the new one."""
    spec = backend.spec
    window = primer[-spec.seq_len:].copy()
    t, p = np.float32(spec.sampling.temperature), np.float32(spec.sampling.top_p)
    out = []
    for i in range(n):
        note = backend.run(window[None], *zero_state(spec, 1), uniforms(seed, 1, i, 1)[0], t, p).next_note[0]
        out.append(note)
        window = np.append(np.delete(window, 0, axis=0), note[None], axis=0)
    return np.array(out)


def test_window_mode_equals_the_seed_notebooks_loop(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(generator.generate(seed_notes, 30, seed=11, mode="window"),
                                  tutorial_window_loop(generator.backend, seed_notes, 30, 11))


def test_num_outputs_are_variations_in_one_batch(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    out, used = generator.generate_seeded(seed_notes, 30, num_outputs=4)
    assert out.shape == (4, 30, 4) and 0 <= used < 2**64
    assert len({tuple(row) for row in out[:, :, 0]}) > 1
    np.testing.assert_array_equal(generator.generate(seed_notes, 30, num_outputs=4, seed=used), out)


def test_a_rollout_reports_its_primer_and_seed(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    done = generator.rollout(seed_notes, GenerationOptions(notes=8, seed=4, primer_notes=30))
    np.testing.assert_array_equal(done.primer, seed_notes[-30:])
    assert done.notes.shape == (1, 8, 4) and done.seed == 4


def test_a_short_seed_primes_with_all_it_has(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    assert generator.generate(seed_notes[:5], 10, seed=0).shape == (10, 4)
    with pytest.raises(OptionsError, match="primer_notes 20: primer has only 5 notes"):
        generator.generate(seed_notes[:5], 10, primer_notes=20)


def test_a_seed_without_dynamics_is_continued(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    flat = seed_notes.copy()
    flat[:, 3] = 127  # quantised MIDI often plays every note at one velocity
    notes = generator.generate(flat, 64, seed=0)
    assert ((notes[:, 3] >= 1) & (notes[:, 3] <= 127)).all()


@pytest.mark.parametrize("field, value", [("notes", 0), ("notes", -3), ("notes", 10**30), ("temperature", -0.5),
                                          ("temperature", (1.0, 2.0)), ("top_p", 0.0), ("top_p", 1.5),
                                          ("top_p", "1,x,1,1"), ("mode", "sliding"), ("num_outputs", 0),
                                          ("primer_notes", 0), ("seed", -1), ("seed", 2**64), ("notes", True)])
def test_options_are_checked_in_one_place_and_name_the_parameter(field: str, value: object) -> None:
    with pytest.raises(OptionsError) as caught:
        GenerationOptions(**{field: value})
    assert caught.value.field == field and str(caught.value).startswith(f"{field} ")
    flag = "--" + field.replace("_", "-")
    assert caught.value.naming(flag).startswith(f"{flag} ")


def test_graph_inputs_given_to_the_python_api_are_checked(generator, seed_notes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    backend = generator.backend
    x, (h, c) = seed_notes[None, :10], zero_state(backend.spec, 1)
    u, t, p = np.full((1, 8), 0.5, np.float32), np.ones(4, np.float32), np.ones(4, np.float32)
    assert backend.run(x, h, c, u, t, p).next_note.shape == (1, 4)
    for args, message in ((((x, h, c, np.full((1, 8), 1.0), t, p)), "uniforms must lie in \\[0, 1\\)"),
                          (((x, h, c, np.full((1, 8), -0.1), t, p)), "uniforms must lie in \\[0, 1\\)"),
                          (((x, h, c, np.full((2, 8), 0.5), t, p)), "uniforms must have shape \\[1, 8\\]"),
                          (((x, h, c, u, np.ones(3), p)), "temperature must have shape \\[4\\]"),
                          (((x, h, c, u, np.float32([1, np.nan, 1, 1]), p)), "temperature holds NaN"),
                          (((x, h[:, :, :5], c, u, t, p)), "h0 must have shape"),
                          (((x[0], h, c, u, t, p)), "notes must have shape")):
        with pytest.raises(OptionsError, match=message):
            backend.run(*args)


TORCH_FREE = """
import sys
import mpx.runtime
from mpx.runtime import load, read_notes
gen = load(sys.argv[1])
notes = gen.generate(read_notes(sys.argv[2]), 32, seed=0)
assert notes.shape == (32, 4)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_importing_the_runtime_and_running_onnx_loads_no_torch() -> None:
    result = subprocess.run([sys.executable, "-c", TORCH_FREE, str(ARTIFACTS / "music_producter.onnx"),
                             str(ARTIFACTS / "seed.mid")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

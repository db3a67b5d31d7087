"""Runtime: generation from any artifact, the graph's own sampling, the portable random stream,
`mpx run`, bad input, and no torch on the ONNX path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from mpx.runtime import GenerationOptions, bins, load, read_csv, read_notes, uniforms, zero_state
from mpx.runtime.contract import SPEC_KEY
from mpx.runtime.errors import OptionsError, SpecError
from mpx.runtime.rng import UniformStream, splitmix64

from conftest import ROOT, run_cli, torch_blocked


@pytest.fixture(scope="module")
def generators(tiny_artifacts: Path, tiny_checkpoint: Path) -> dict:
    return {"eager": load(tiny_checkpoint), "torchscript": load(tiny_artifacts / "music_producter.pt"),
            "onnx": load(tiny_artifacts / "music_producter.onnx")}


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


# -- the graph's own sampling ---------------------------------------------------------------
def documented_note(logits: np.ndarray, u: np.ndarray, temperature: np.ndarray, top_p: np.ndarray,
                    config) -> np.ndarray:  # type: ignore[no-untyped-def]
    """README, "Sampling inside the graph", in float64 numpy: logits [B, 4, 128] -> notes [B, 4]."""
    out = np.zeros((len(logits), 4))
    for a, attribute in enumerate(bins.of(config)):
        n = attribute.count
        for b in range(len(logits)):
            t = temperature[a]
            z = logits[b, a, :n].astype(np.float64) / max(t, 1e-6)
            order = np.argsort(-z, kind="stable")
            p = np.exp(z[order] - z[order][0])
            cdf = np.cumsum(p / p.sum())
            draw, place = (u[b, a], u[b, 4 + a]) if t > 0 else (0.0, 0.5)
            k = min(int((cdf <= draw * top_p[a]).sum()), n - 1)
            out[b, a] = attribute.value(order[k], place)
    return out


def test_the_graph_samples_by_the_documented_rule(generators: dict, seed_notes: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    backend = generators["onnx"].backend
    config = backend.spec.config
    x = np.stack([seed_notes[i:i + 20] for i in range(0, 600, 50)])
    for temperature, top_p in (((1, 1, 1, 1), (1, 1, 1, 1)), ((0.7, 1.3, 0.9, 1), (0.9, 0.8, 1, 0.5)),
                               ((0, 0, 0, 0), (1, 1, 1, 1)), ((1, 0, 2, 0), (0.6, 1, 0.95, 1))):
        u = rng.random((len(x), 8)).astype(np.float32)
        t, p = np.float32(temperature), np.float32(top_p)
        out = backend.run(x, *zero_state(backend.spec, len(x)), u, t, p)
        want = documented_note(out.logits[:, -1], u, t, p, config)
        np.testing.assert_array_equal(out.next_note[:, [0, 3]], want[:, [0, 3]])
        np.testing.assert_allclose(out.next_note[:, 1:3], want[:, 1:3], rtol=1e-5, atol=1e-6)


def test_sampled_bins_follow_the_softmax_and_the_nucleus(generators: dict, seed_notes: np.ndarray) -> None:
    backend = generators["onnx"].backend
    n = 20000
    x = np.repeat(seed_notes[None, :30], n, axis=0)
    u = np.random.default_rng(1).random((n, 8)).astype(np.float32)
    ones = np.ones(4, np.float32)
    out = backend.run(x, *zero_state(backend.spec, n), u, ones, ones)
    logits = out.logits[0, -1, 0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    seen = np.bincount(out.next_note[:, 0].astype(int), minlength=128) / n
    assert np.abs(seen - probs).max() < 0.015
    nucleus = backend.run(x, *zero_state(backend.spec, n), u, ones, np.float32([0.5, 1, 1, 1]))
    ranked = np.argsort(-probs)
    smallest = ranked[: int(np.searchsorted(np.cumsum(probs[ranked]), 0.5)) + 1]
    assert set(np.unique(nucleus.next_note[:, 0]).astype(int)) <= set(smallest.tolist())


def test_greedy_takes_the_likeliest_bin_and_its_centre(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["eager"]
    notes = gen.generate(seed_notes, 20, temperature=0, seed=3)
    assert np.array_equal(notes, gen.generate(seed_notes, 20, temperature=0, seed=99))  # no randomness
    config = gen.spec.config
    x = seed_notes[None, -gen.spec.seq_len:]
    h, c = zero_state(gen.spec, 1)
    zeros = np.zeros(4, np.float32)
    for i in range(20):
        out = gen.backend.run(x, h, c, np.zeros((1, 8), np.float32), zeros, np.ones(4, np.float32))
        for a, attribute in enumerate(bins.of(config)):
            best = int(np.argmax(out.logits[0, -1, a, :attribute.count]))
            assert notes[i, a] == pytest.approx(float(attribute.value(best, 0.5)), rel=1e-5)
        x, h, c = notes[None, i:i + 1], out.hn, out.cn


# -- generation -----------------------------------------------------------------------------
def test_same_seed_same_notes_on_every_backend(generators: dict, seed_notes: np.ndarray) -> None:
    outs = {name: g.generate(seed_notes, 64, seed=7) for name, g in generators.items()}
    for name in ("torchscript", "onnx"):
        np.testing.assert_array_equal(outs[name][:, [0, 3]], outs["eager"][:, [0, 3]])
        np.testing.assert_allclose(outs[name][:, 1:3], outs["eager"][:, 1:3], atol=1e-5)
    assert not np.array_equal(generators["onnx"].generate(seed_notes, 64, seed=8)[:, 0], outs["onnx"][:, 0])


def test_stream_yields_what_generate_returns(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["onnx"]
    for mode in ("stateful", "window"):
        streamed = np.stack(list(gen.stream(seed_notes, 40, seed=3, mode=mode)))
        np.testing.assert_array_equal(streamed, gen.generate(seed_notes, 40, seed=3, mode=mode))
    batched = list(gen.stream(seed_notes, 5, seed=3, num_outputs=3))
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


def test_window_mode_equals_the_seed_notebooks_loop(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["onnx"]
    np.testing.assert_array_equal(gen.generate(seed_notes, 50, seed=11, mode="window"),
                                  tutorial_window_loop(gen.backend, seed_notes, 50, 11))


def test_stateful_and_window_modes_agree_while_the_window_covers_everything(generators: dict, seed_notes: np.ndarray) -> None:
    # With a primer of seq_len notes, the first note of both modes sees the same input from zero state.
    gen = generators["eager"]
    np.testing.assert_allclose(gen.generate(seed_notes, 1, seed=5), gen.generate(seed_notes, 1, seed=5, mode="window"),
                               atol=1e-6)


def test_num_outputs_are_variations_in_one_batch(generators: dict, seed_notes: np.ndarray) -> None:
    out = generators["onnx"].generate(seed_notes, 30, num_outputs=4, seed=1)
    assert out.shape == (4, 30, 4)
    assert len({tuple(row) for row in out[:, :, 0]}) > 1


def test_a_short_seed_primes_with_all_it_has(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["onnx"]
    assert gen.generate(seed_notes[:5], 10, seed=0).shape == (10, 4)
    with pytest.raises(OptionsError, match="fewer than --primer-notes 20"):
        gen.generate(seed_notes[:5], 10, primer_notes=20)


def test_a_seed_without_dynamics_is_continued(generators: dict, seed_notes: np.ndarray) -> None:
    flat = seed_notes.copy()
    flat[:, 3] = 127  # quantised MIDI often plays every note at one velocity
    notes = generators["onnx"].generate(flat, 64, seed=0)
    assert ((notes[:, 3] >= 1) & (notes[:, 3] <= 127)).all()


@pytest.mark.parametrize("field, value", [("notes", 0), ("notes", -3), ("notes", 10**30), ("temperature", -0.5),
                                          ("temperature", (1.0, 2.0)), ("top_p", 0.0), ("top_p", 1.5),
                                          ("top_p", "1,x,1,1"), ("mode", "sliding"), ("num_outputs", 0),
                                          ("primer_notes", 0), ("seed", -1), ("seed", 2**64)])
def test_options_are_checked_in_one_place(field: str, value: object) -> None:
    flag = "--" + field.replace("_", "-")
    with pytest.raises(OptionsError, match=flag):
        GenerationOptions(**{field: value})


def test_graph_inputs_given_to_the_python_api_are_checked(generators: dict, seed_notes: np.ndarray) -> None:
    backend = generators["onnx"].backend
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


# -- mpx run --------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_run_writes_n_notes_per_output(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    out = tmp_path / "song.mid"
    result = run_cli("run", str(seed_midi), "--model", str(tiny_artifacts / "music_producter.onnx"),
                     "--notes", "100", "--seed", "1", "--out", str(out), "--program", "4",
                     "--plot", str(tmp_path / "roll.png"))
    assert result.returncode == 0, result.stderr
    assert "seed 1" in result.stdout
    midi = pretty_midi.PrettyMIDI(str(out))
    assert sum(len(i.notes) for i in midi.instruments) == 100
    assert midi.instruments[0].program == 4
    assert len({n.velocity for n in midi.instruments[0].notes}) > 3  # generated dynamics, not one velocity
    assert (tmp_path / "roll.png").read_bytes()[:4] == b"\x89PNG"
    several = run_cli("run", str(seed_midi), "--model", str(tiny_artifacts / "music_producter.pt"),
                      "--notes", "30", "--num-outputs", "3", "--out", str(tmp_path / "v.mid"), "--velocity", "70")
    assert several.returncode == 0, several.stderr
    for i in (1, 2, 3):
        notes = read_notes(tmp_path / f"v-{i}.mid")
        assert len(notes) == 30 and (notes[:, 3] == 70).all()


@pytest.mark.slow
def test_cli_run_repeats_a_run_from_its_printed_seed(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    model = str(tiny_artifacts / "music_producter.onnx")
    first = run_cli("run", str(seed_midi), "--model", model, "--notes", "16", "--out", str(tmp_path / "a.csv"))
    assert first.returncode == 0, first.stderr
    seed = first.stdout.rsplit("seed ", 1)[1].split(")")[0]
    again = run_cli("run", str(seed_midi), "--model", model, "--notes", "16", "--seed", seed,
                    "--out", str(tmp_path / "b.csv"), "--include-primer", "--temperature", "1,0.9,0.9,1")
    assert again.returncode == 0, again.stderr
    with_primer = read_csv(tmp_path / "b.csv")
    primer = load(model).primer_from(read_notes(seed_midi), GenerationOptions())
    np.testing.assert_array_equal(with_primer[:len(primer)], primer)
    assert len(with_primer) == len(primer) + 16


@pytest.mark.slow
def test_cli_run_same_seed_same_notes_across_backends(tiny_artifacts: Path, tiny_checkpoint: Path,
                                                      seed_midi: Path, tmp_path: Path) -> None:
    outputs = []
    for backend, model in (("onnx", tiny_artifacts / "music_producter.onnx"),
                           ("torchscript", tiny_artifacts / "music_producter.pt"), ("eager", tiny_checkpoint)):
        out = tmp_path / f"{backend}.csv"
        result = run_cli("run", str(seed_midi), "--backend", backend, "--model", str(model),
                         "--notes", "64", "--seed", "5", "--out", str(out))
        assert result.returncode == 0, result.stderr
        outputs.append(read_csv(out))
    for other in outputs[1:]:
        np.testing.assert_array_equal(other[:, [0, 3]], outputs[0][:, [0, 3]])
        np.testing.assert_allclose(other[:, 1:3], outputs[0][:, 1:3], atol=1e-5)


def _with_spec_version(source: Path, target: Path, version: int) -> Path:
    import onnx
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == SPEC_KEY:
            spec = json.loads(prop.value)
            spec["spec_version"] = version
            prop.value = json.dumps(spec)
    onnx.save(model, str(target))
    return target


def test_a_v1_artifact_is_refused_naming_its_contract(tiny_artifacts: Path, tmp_path: Path) -> None:
    old = _with_spec_version(tiny_artifacts / "music_producter.onnx", tmp_path / "old.onnx", 1)
    with pytest.raises(SpecError, match="follows graph contract v1; this mpx runs v2.*mpx train"):
        load(old)


@pytest.mark.slow
def test_cli_run_bad_input_is_one_line_and_writes_nothing(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    onnx_model = tiny_artifacts / "music_producter.onnx"
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(onnx_model.read_bytes()[:2000])
    future = _with_spec_version(onnx_model, tmp_path / "future.onnx", 99)
    old = _with_spec_version(onnx_model, tmp_path / "old.onnx", 1)
    short = tmp_path / "short.csv"
    short.write_text("pitch,step,duration,velocity\n60,0,0.5,80\n62,0.5,0.5,80\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.mid"
    cases = [
        ([str(ROOT / "tests/data/bad-midi/synthetic_derived/zero_bytes.mid")], "is empty"),
        ([str(ROOT / "tests/data/bad-midi/miditok_ValueError_Control168.mid")], "cannot parse MIDI"),
        ([str(ROOT / "tests/data/bad-midi/miditok_empty.mid")], "holds no notes"),
        ([str(tmp_path / "absent.mid")], "no such file"),
        ([str(short), "--primer-notes", "25"], "has 2 notes, fewer than --primer-notes 25"),
        ([str(seed_midi), "--model", str(tmp_path / "absent.onnx")], "no such model file"),
        ([str(seed_midi), "--model", str(corrupt)], "not a loadable ONNX model"),
        ([str(seed_midi), "--model", str(future)], "spec version 99 is newer"),
        ([str(seed_midi), "--model", str(old)], "follows graph contract v1"),
        ([str(seed_midi), "--model", str(tmp_path / "x.tflite")], "unknown model file type"),
        ([str(seed_midi), "--notes", "0"], "--notes must be an integer"),
        ([str(seed_midi), "--notes", "-4"], "--notes must be an integer"),
        ([str(seed_midi), "--temperature", "-1"], "--temperature must be in [0, 100]"),
        ([str(seed_midi), "--temperature", "1,2"], "--temperature takes one number or 4"),
        ([str(seed_midi), "--top-p", "0"], "--top-p must be in (0, 1]"),
        ([str(seed_midi), "--top-p", "1.01"], "--top-p must be in (0, 1]"),
        ([str(seed_midi), "--velocity", "0"], "--velocity must be 1..127"),
        ([str(seed_midi), "--threads", "0"], "--threads must be"),
    ]
    for args, message in cases:
        if "--model" not in args:
            args = [*args, "--model", str(onnx_model)]
        result = run_cli("run", *args, "--out", str(out))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (message, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        assert list(out_dir.iterdir()) == []
    for target, message in ((tmp_path / "missing-dir" / "x.mid", "output directory does not exist"),
                            (out_dir, "is a directory")):
        result = run_cli("run", str(seed_midi), "--model", str(onnx_model), "--out", str(target))
        assert result.returncode == 1 and message in result.stderr
    assert list(out_dir.iterdir()) == []


TORCH_FREE = """
import sys
import numpy as np
import mpx.runtime
from mpx.runtime import load, read_notes
gen = load(sys.argv[1])
notes = gen.generate(read_notes(sys.argv[2]), 32, seed=0)
assert notes.shape == (32, 4)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_importing_the_runtime_and_running_onnx_loads_no_torch(tiny_artifacts: Path, seed_midi: Path) -> None:
    result = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tiny_artifacts / "music_producter.onnx"),
                             str(seed_midi)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_onnx_run_works_where_torch_cannot_be_imported(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    env = torch_blocked(tmp_path)
    out = tmp_path / "song.mid"
    result = run_cli("run", str(seed_midi), "--backend", "onnx", "--model", str(tiny_artifacts / "music_producter.onnx"),
                     "--notes", "20", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert len(read_notes(out)) == 20
    no_torch = run_cli("run", str(seed_midi), "--backend", "torchscript", "--out", str(out), env=env)
    assert no_torch.returncode == 1 and "needs torch" in no_torch.stderr

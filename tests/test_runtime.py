"""Runtime: generation from any artifact, the sampler, `mpx run`, bad input, no torch on ONNX."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from mpx.runtime import GenerationOptions, Sampler, load, read_notes
from mpx.runtime.errors import OptionsError
from mpx.runtime.contract import SPEC_KEY

from conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def generators(tiny_artifacts: Path, tiny_checkpoint: Path) -> dict:
    return {"eager": load(tiny_checkpoint), "torchscript": load(tiny_artifacts / "music_producter.pt"),
            "onnx": load(tiny_artifacts / "music_producter.onnx")}


def test_same_seed_same_notes_on_every_backend(generators: dict, seed_notes: np.ndarray) -> None:
    outs = {name: g.generate(seed_notes, 64, seed=7, temperature=1.0) for name, g in generators.items()}
    for name in ("torchscript", "onnx"):
        np.testing.assert_array_equal(outs[name][:, 0], outs["eager"][:, 0])
        np.testing.assert_allclose(outs[name][:, 1:], outs["eager"][:, 1:], atol=1e-5)
    assert not np.array_equal(generators["onnx"].generate(seed_notes, 64, seed=8)[:, 0], outs["onnx"][:, 0])


def test_stream_yields_what_generate_returns(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["onnx"]
    for mode in ("stateful", "window"):
        streamed = np.stack(list(gen.stream(seed_notes, 40, seed=3, mode=mode)))
        np.testing.assert_array_equal(streamed, gen.generate(seed_notes, 40, seed=3, mode=mode))
    batched = list(gen.stream(seed_notes, 5, seed=3, num_outputs=3))
    assert len(batched) == 5 and batched[0].shape == (3, 3)


def tutorial_window_loop(backend, primer: np.ndarray, n: int, options: GenerationOptions) -> np.ndarray:
    """The seed notebook's generation loop, re-implemented on an mpx backend: for every note,
    run the last seq_len notes from a zero state, sample, drop the oldest note, append the new
    one (raw pitch: these graphs normalise inside, so feeding it raw is right here)."""
    width = backend.spec.seq_len
    sample = Sampler(options, backend.spec.timing)  # the spec's timing tables, as mpx samples
    window = primer[-width:].copy()
    out = []
    for _ in range(n):
        h = np.zeros((backend.spec.layers, 1, backend.spec.hidden), np.float32)
        step = backend.step(window[None], h, h.copy())
        note = sample(step.pitch_logits[:, -1], step.step[:, -1], step.duration[:, -1])[0]
        out.append(note)
        window = np.append(np.delete(window, 0, axis=0), note[None], axis=0)
    return np.array(out)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_window_mode_equals_the_seed_notebooks_loop(generators: dict, seed_notes: np.ndarray, temperature: float) -> None:
    gen = generators["onnx"]
    options = GenerationOptions(notes=50, temperature=temperature, seed=11, mode="window")
    np.testing.assert_array_equal(gen.generate(seed_notes, options=options),
                                  tutorial_window_loop(gen.backend, seed_notes, 50, options))


def test_stateful_and_window_modes_agree_while_the_window_covers_everything(generators: dict, seed_notes: np.ndarray) -> None:
    # With a primer of seq_len notes, the first note of both modes sees the same input from zero state.
    gen = generators["eager"]
    stateful = gen.generate(seed_notes, 1, temperature=0.0)
    window = gen.generate(seed_notes, 1, temperature=0.0, mode="window")
    np.testing.assert_allclose(stateful, window, atol=1e-6)


def test_greedy_is_the_argmax_rollout(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["eager"]
    notes = gen.generate(seed_notes, 20, temperature=0.0)
    h = np.zeros((gen.spec.layers, 1, gen.spec.hidden), np.float32)
    x, c = seed_notes[None, -gen.spec.seq_len:], h.copy()
    for i in range(20):
        logits, step, duration, h, c = gen.backend.step(x, h, c)
        assert notes[i, 0] == np.argmax(logits[0, -1])
        assert notes[i, 1] == pytest.approx(max(step[0, -1], 0.0))
        x = notes[None, i:i + 1]
    assert np.array_equal(gen.generate(seed_notes, 20, top_k=1, seed=5, timing="mean"), notes)


def test_sampler_follows_the_softmax_and_its_filters() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05] + [1e-12] * 124]))
    draws = Sampler(GenerationOptions(temperature=1.0, top_p=1.0, seed=0))
    counts = np.bincount([int(draws.pitch(logits)[0]) for _ in range(4000)], minlength=128)[:4] / 4000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    nucleus = Sampler(GenerationOptions(temperature=1.0, top_p=0.7, seed=0))
    assert {int(nucleus.pitch(logits)[0]) for _ in range(300)} == {0, 1}
    top_k = Sampler(GenerationOptions(temperature=1.0, top_p=1.0, top_k=3, seed=0))
    assert {int(top_k.pitch(logits)[0]) for _ in range(300)} == {0, 1, 2}
    notes = draws(logits, np.array([-0.2]), np.array([0.3]))
    assert notes[0, 1] == 0.0 and notes[0, 2] == pytest.approx(0.3)


def test_num_outputs_are_variations_in_one_batch(generators: dict, seed_notes: np.ndarray) -> None:
    out = generators["onnx"].generate(seed_notes, 30, num_outputs=4, seed=1)
    assert out.shape == (4, 30, 3)
    assert len({tuple(row) for row in out[:, :, 0]}) > 1


@pytest.mark.parametrize("field, value", [("notes", 0), ("notes", -3), ("temperature", -0.5),
                                          ("top_p", 0.0), ("top_p", 1.5), ("top_k", 200),
                                          ("mode", "sliding"), ("num_outputs", 0), ("primer_notes", 0)])
def test_options_are_validated_in_one_place(field: str, value: object) -> None:
    with pytest.raises(OptionsError, match=field):
        GenerationOptions(**{field: value})


def test_cli_run_writes_n_notes_per_output(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    out = tmp_path / "song.mid"
    result = run_cli("run", str(seed_midi), "--model", str(tiny_artifacts / "music_producter.onnx"),
                     "--notes", "100", "--seed", "1", "--out", str(out), "--program", "4", "--velocity", "70",
                     "--plot", str(tmp_path / "roll.png"))
    assert result.returncode == 0, result.stderr
    midi = pretty_midi.PrettyMIDI(str(out))
    assert sum(len(i.notes) for i in midi.instruments) == 100
    assert midi.instruments[0].program == 4 and midi.instruments[0].notes[0].velocity == 70
    assert (tmp_path / "roll.png").read_bytes()[:4] == b"\x89PNG"
    several = run_cli("run", str(seed_midi), "--model", str(tiny_artifacts / "music_producter.pt"),
                      "--notes", "30", "--num-outputs", "3", "--out", str(tmp_path / "v.mid"))
    assert several.returncode == 0, several.stderr
    for i in (1, 2, 3):
        assert len(read_notes(tmp_path / f"v-{i}.mid")) == 30


def test_cli_run_timing_option_reaches_the_sampler(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    model = tiny_artifacts / "music_producter.onnx"
    got = {}
    for timing in ("sample", "mean"):
        out = tmp_path / f"{timing}.csv"
        result = run_cli("run", str(seed_midi), "--model", str(model), "--notes", "16", "--seed", "2",
                         "--timing", timing, "--out", str(out))
        assert result.returncode == 0, result.stderr
        got[timing] = np.loadtxt(out, delimiter=",", skiprows=1)
    want = load(model).generate(read_notes(seed_midi), 16, seed=2, timing="mean")
    np.testing.assert_allclose(got["mean"], want, atol=1e-6)  # the CSV keeps 6 decimals or more
    assert not np.allclose(got["sample"][:, 1:], got["mean"][:, 1:])


@pytest.mark.slow
def test_cli_run_same_seed_same_notes_across_backends(tiny_artifacts: Path, tiny_checkpoint: Path,
                                                      seed_midi: Path, tmp_path: Path) -> None:
    outputs = []
    for backend, model in (("onnx", "music_producter.onnx"), ("torchscript", "music_producter.pt")):
        out = tmp_path / f"{backend}.csv"
        result = run_cli("run", str(seed_midi), "--backend", backend, "--model", str(tiny_artifacts / model),
                         "--notes", "64", "--seed", "5", "--out", str(out))
        assert result.returncode == 0, result.stderr
        outputs.append(np.loadtxt(out, delimiter=",", skiprows=1))
    eager = tmp_path / "eager.csv"
    assert run_cli("run", str(seed_midi), "--backend", "eager", "--model", str(tiny_checkpoint),
                   "--notes", "64", "--seed", "5", "--out", str(eager)).returncode == 0
    outputs.append(np.loadtxt(eager, delimiter=",", skiprows=1))
    for other in outputs[1:]:
        np.testing.assert_array_equal(other[:, 0], outputs[0][:, 0])
        np.testing.assert_allclose(other[:, 1:], outputs[0][:, 1:], atol=1e-5)


def _future_spec_model(source: Path, target: Path) -> Path:
    import onnx
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == SPEC_KEY:
            spec = json.loads(prop.value)
            spec["spec_version"] = 99
            prop.value = json.dumps(spec)
    onnx.save(model, str(target))
    return target


@pytest.mark.slow
def test_cli_run_bad_input_is_one_line_and_writes_nothing(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    onnx_model = tiny_artifacts / "music_producter.onnx"
    short = tmp_path / "short.csv"
    short.write_text("pitch,step,duration\n60,0,0.5\n62,0.5,0.5\n")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(onnx_model.read_bytes()[:2000])
    future = _future_spec_model(onnx_model, tmp_path / "future.onnx")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.mid"
    cases = [
        ([str(ROOT / "tests/data/bad-midi/synthetic_derived/zero_bytes.mid")], "is empty"),
        ([str(ROOT / "tests/data/bad-midi/miditok_ValueError_Control168.mid")], "cannot parse MIDI"),
        ([str(ROOT / "tests/data/bad-midi/miditok_empty.mid")], "holds no notes"),
        ([str(tmp_path / "absent.mid")], "no such file"),
        ([str(short)], "has 2 notes, the primer needs 25"),
        ([str(seed_midi), "--model", str(tmp_path / "absent.onnx")], "no such model file"),
        ([str(seed_midi), "--model", str(corrupt)], "not a loadable ONNX model"),
        ([str(seed_midi), "--model", str(future)], "spec version 99 is newer"),
        ([str(seed_midi), "--model", str(tmp_path / "x.tflite")], "unknown model file type"),
        ([str(seed_midi), "--notes", "0"], "notes must be a positive integer"),
        ([str(seed_midi), "--notes", "-4"], "notes must be a positive integer"),
        ([str(seed_midi), "--temperature", "-1"], "temperature must be >= 0"),
        ([str(seed_midi), "--top-p", "0"], "top_p must be in (0, 1]"),
        ([str(seed_midi), "--top-p", "1.01"], "top_p must be in (0, 1]"),
        ([str(seed_midi), "--velocity", "0"], "velocity must be 1..127"),
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
assert notes.shape == (32, 3)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_importing_the_runtime_and_running_onnx_loads_no_torch(tiny_artifacts: Path, seed_midi: Path) -> None:
    result = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tiny_artifacts / "music_producter.onnx"),
                             str(seed_midi)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_onnx_run_works_where_torch_cannot_be_imported(tiny_artifacts: Path, seed_midi: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {"PYTHONPATH": str(blocker.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "song.mid"
    result = run_cli("run", str(seed_midi), "--backend", "onnx", "--model", str(tiny_artifacts / "music_producter.onnx"),
                     "--notes", "20", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert len(read_notes(out)) == 20
    no_torch = run_cli("run", str(seed_midi), "--backend", "torchscript", "--out", str(out), env=env)
    assert no_torch.returncode == 1 and "needs torch" in no_torch.stderr


class _Uniforms:
    """Stands in for the sampler's generator: hands out fixed uniforms."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = list(values)

    def random(self, size: int | tuple[int, ...] | None = None):  # type: ignore[no-untyped-def]
        if size is None:
            return self.values.pop(0)
        count = int(np.prod(size))
        out, self.values = np.array(self.values[:count]).reshape(size), self.values[count:]
        return out


@pytest.mark.parametrize("options", [dict(top_p=0.9), dict(top_p=1.0), dict(top_k=7),
                                     dict(top_p=0.5, top_k=3, temperature=0.7)])
def test_one_stream_fast_path_draws_what_the_batch_path_draws(options: dict) -> None:
    logits = (np.random.default_rng(0).normal(size=(300, 128)) * 3).astype(np.float32)
    uniforms = np.random.default_rng(1).random(300)
    one, batch = Sampler(GenerationOptions(**options)), Sampler(GenerationOptions(**options))
    one.rng, batch.rng = _Uniforms(uniforms), _Uniforms(uniforms)
    singles = [one.pitch(logits[i:i + 1])[0] for i in range(300)]
    np.testing.assert_array_equal(singles, batch.pitch(logits))


def test_timing_is_drawn_from_the_spec_tables_when_sampling() -> None:
    table = {"edges": [0.1], "ratios": [[0.0, 0.5, 1.0], [1.0, 2.0, 3.0]]}
    timing = {"step": table, "duration": table}
    logits = np.zeros((4000, 128), np.float32)
    pred = np.where(np.arange(4000) % 2 == 0, 0.05, 0.2).astype(np.float32)  # one per bin
    notes = Sampler(GenerationOptions(seed=0), timing)(logits, pred, pred)
    low, high = notes[0::2, 1] / 0.05, notes[1::2, 1] / 0.2
    assert 0 <= low.min() and low.max() <= 1.0 and abs(np.median(low) - 0.5) < 0.05
    assert 1.0 <= high.min() and high.max() <= 3.0 and abs(np.median(high) - 2.0) < 0.05
    for options in (GenerationOptions(temperature=0.0), GenerationOptions(seed=0, timing="mean")):
        kept = Sampler(options, timing)(logits[:4], pred[:4], pred[:4])
        np.testing.assert_array_equal(kept[:, 1], pred[:4])  # greedy and "mean": the prediction


def test_one_stream_fast_path_draws_the_same_notes_with_timing() -> None:
    spec_timing = load().spec.timing  # the bundled model's calibrated tables
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(300, 128)) * 3).astype(np.float32)
    step, duration = (rng.random(300) * 0.3).astype(np.float32), rng.random(300).astype(np.float32)
    uniforms = np.random.default_rng(5).random(900)
    # one stream draws (pitch, step, duration) per note; a batch draws every pitch, then the timing
    per_note = np.stack([uniforms[:300], uniforms[300::2], uniforms[301::2]], axis=1).ravel()
    one, batch = Sampler(GenerationOptions(), spec_timing), Sampler(GenerationOptions(), spec_timing)
    one.rng, batch.rng = _Uniforms(per_note), _Uniforms(uniforms)
    singles = np.concatenate([one(logits[i:i + 1], step[i:i + 1], duration[i:i + 1]) for i in range(300)])
    np.testing.assert_array_equal(singles, batch(logits, step, duration))

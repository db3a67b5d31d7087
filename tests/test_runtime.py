"""Runtime with the torch backends: generation from the tiny model's checkpoint, TorchScript and
ONNX artifacts alike, greedy decoding, `mpx run` across backends, bad input, and the ONNX path
where torch cannot be imported. (The torch-free tier, tests/runtime/, holds the rest.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from mpx.runtime import GenerationOptions, bins, controls, load, read_csv, read_notes, zero_state
from mpx.runtime.contract import SPEC_KEY
from mpx.runtime.errors import SpecError

from conftest import ROOT, graph_run, run_cli, torch_blocked


@pytest.fixture(scope="module")
def generators(tiny_artifacts: Path, tiny_checkpoint: Path) -> dict:
    return {"eager": load(tiny_checkpoint), "torchscript": load(tiny_artifacts / "music_producter.pt"),
            "onnx": load(tiny_artifacts / "music_producter.onnx")}


def test_greedy_takes_the_likeliest_bin_and_its_centre(generators: dict, seed_notes: np.ndarray) -> None:
    gen = generators["eager"]
    notes = gen.generate(seed_notes, 20, temperature=0, seed=3)
    assert np.array_equal(notes, gen.generate(seed_notes, 20, temperature=0, seed=99))  # no randomness
    config = gen.spec.config
    x = seed_notes[None, -gen.spec.seq_len:]
    h, c = zero_state(gen.spec, 1)
    zeros = np.zeros(4, np.float32)
    held = controls.resolve(x[0])[None]  # the Generator's default: the primer's summaries
    for i in range(20):
        out = graph_run(gen.backend, x, h, c, np.zeros((1, 8), np.float32), zeros, np.ones(4, np.float32),
                        controls=held)
        for a, attribute in enumerate(bins.of(config)):
            best = int(np.argmax(out.logits[0, -1, a, :attribute.count]))
            assert notes[i, a] == pytest.approx(float(attribute.value(best, 0.5)), rel=1e-5)
        x, h, c = notes[None, i:i + 1], out.hn, out.cn


def test_same_seed_same_notes_on_every_backend(generators: dict, seed_notes: np.ndarray) -> None:
    outs = {name: g.generate(seed_notes, 64, seed=7) for name, g in generators.items()}
    for name in ("torchscript", "onnx"):
        np.testing.assert_array_equal(outs[name][:, [0, 3]], outs["eager"][:, [0, 3]])
        np.testing.assert_allclose(outs[name][:, 1:3], outs["eager"][:, 1:3], atol=1e-5)
    assert not np.array_equal(generators["onnx"].generate(seed_notes, 64, seed=8)[:, 0], outs["onnx"][:, 0])


def test_stateful_and_window_modes_agree_while_the_window_covers_everything(generators: dict, seed_notes: np.ndarray) -> None:
    # With a primer of seq_len notes, the first note of both modes sees the same input from zero state.
    gen = generators["eager"]
    np.testing.assert_allclose(gen.generate(seed_notes, 1, seed=5), gen.generate(seed_notes, 1, seed=5, mode="window"),
                               atol=1e-6)


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
    with pytest.raises(SpecError, match="follows graph contract v1; this mpx runs v3.*mpx train"):
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
        ([str(short), "--primer-notes", "25"], "--primer-notes 25: " + str(short) + " has only 2 notes"),
        ([str(seed_midi), "--model", str(tmp_path / "absent.onnx")], "no such model file"),
        ([str(seed_midi), "--model", str(corrupt)], "not a loadable ONNX model"),
        ([str(seed_midi), "--model", str(future)], "spec version 99 is newer"),
        ([str(seed_midi), "--model", str(old)], "follows graph contract v1"),
        ([str(seed_midi), "--model", str(tmp_path / "x.tflite")], "unknown model file type"),
        ([str(seed_midi), "--notes", "0"], "--notes must be an integer"),
        ([str(seed_midi), "--notes", "-4"], "--notes must be an integer"),
        ([str(seed_midi), "--temperature", "-1"], "--temperature must be a number in [0, 100]"),
        ([str(seed_midi), "--temperature", "1,2"], "--temperature takes one number or 4"),
        ([str(seed_midi), "--top-p", "0"], "--top-p must be a number in (0, 1]"),
        ([str(seed_midi), "--top-p", "1.01"], "--top-p must be a number in (0, 1]"),
        ([str(seed_midi), "--velocity", "0"], "--velocity must be an integer 1..127"),
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

"""Damaged and untrusted artifacts (the tiny model's, made with torch): a damaged spec is refused
when opened and by `mpx info`, TorchScript is treated as the program it is (info never runs it),
damage that still loads is caught by its notes, and a Generator shared by threads gives each
the notes it gives alone."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import GenerationOptions, load
from mpx.runtime.contract import SPEC_KEY, TORCHSCRIPT_SPEC_FILE
from mpx.runtime.errors import ArtifactError, SpecError
from mpx.runtime.info import describe
from mpx.runtime.run import generate_files

from clitools import json_edit, mpx, one_line_error
from conftest import run_cli, torch_blocked

pytest.importorskip("torch", reason="the damaged artifacts are made with torch")


@pytest.fixture(scope="module")
def onnx_model(tiny_artifacts: Path) -> Path:
    return tiny_artifacts / "music_producter.onnx"


def _onnx_with_spec(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """The graph with its spec edited and without its checksum (as a file written before mpx
    recorded one): each check of the spec is seen, not the checksum that would refuse any edit
    first (tests/runtime/test_checks_on_open.py)."""
    import onnx
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == SPEC_KEY:
            prop.value = edit(json_edit(lambda s: s.pop("integrity"))(prop.value))
    onnx.save(model, str(target))
    return target


DAMAGED_SPECS = {
    "spec is not valid JSON": lambda text: text[:-5],
    "config must be a JSON object": json_edit(lambda s: s.update(config=[32, 1])),
    "unknown keys ['heads']": json_edit(lambda s: s["config"].update(heads=4)),
    "lacks ['hidden']": json_edit(lambda s: s["config"].pop("hidden")),
    "spec says 1 LSTM layer(s) of hidden size 128, its graph 1 of 32":
        json_edit(lambda s: s["config"].update(hidden=128)),
    "no valid spec_version": json_edit(lambda s: s.update(spec_version=0)),
    "no valid spec_version ": json_edit(lambda s: s.update(spec_version=-3)),
    "hidden must be an integer": json_edit(lambda s: s["config"].update(hidden="32")),
}


@pytest.mark.parametrize("message", list(DAMAGED_SPECS))
def test_a_damaged_onnx_spec_is_refused_when_opened_and_by_info(message: str, onnx_model: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    damaged = _onnx_with_spec(onnx_model, tmp_path / "damaged.onnx", DAMAGED_SPECS[message])
    with pytest.raises((SpecError, ArtifactError), match=None) as caught:
        load(damaged)
    assert message.strip() in str(caught.value) and str(damaged) in str(caught.value)
    code, _, err = mpx(capsys, "info", str(damaged))
    one_line_error(code, err, message.strip())


def _pt_with_spec(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    import torch
    extra = {TORCHSCRIPT_SPEC_FILE: ""}
    module = torch.jit.load(str(source), _extra_files=extra)  # our own tiny artifact: trusted
    torch.jit.save(module, str(target), _extra_files={TORCHSCRIPT_SPEC_FILE: edit(extra[TORCHSCRIPT_SPEC_FILE])})
    return target


def test_a_torchscript_spec_that_disagrees_with_its_module_is_refused(tiny_artifacts: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    edit = json_edit(lambda s: s["config"].update(hidden=128, layers=2))
    damaged = _pt_with_spec(tiny_artifacts / "music_producter.pt", tmp_path / "damaged.pt", edit)
    with pytest.raises(ArtifactError, match="spec says 2 LSTM layer\\(s\\) of hidden size 128, its module 1 of 32"):
        load(damaged)
    code, _, err = mpx(capsys, "info", str(damaged))
    one_line_error(code, err, "its module 1 of 32")

EVIL = """
import sys, torch
from typing import Tuple

class Evil(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return (self.w, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        self.w, self.marker, self.training = state[0], state[1], state[2]
        written = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8)
        written.fill_(66)
        self.w = self.w + written[:3].float()

torch.jit.save(torch.jit.script(Evil(sys.argv[2])), sys.argv[1],
               _extra_files={"mpx_spec.json": sys.argv[3]})
"""


def test_info_never_runs_a_torchscript_file(tiny_artifacts: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    marker = tmp_path / "marker"
    spec = describe(tiny_artifacts / "music_producter.onnx")["spec"]
    evil = tmp_path / "evil.pt"
    maker = tmp_path / "make_evil.py"  # torch.jit.script reads the class's source file
    maker.write_text(EVIL)
    subprocess.run([sys.executable, str(maker), str(evil), str(marker), json.dumps(spec)], check=True, timeout=120)
    assert not marker.exists()
    code, _, err = mpx(capsys, "info", str(evil))
    one_line_error(code, err, str(evil), "found no LSTM")
    assert not marker.exists()  # info read the archive as data
    torch.jit.load(str(evil))  # what info used to do: loading alone runs __setstate__
    assert marker.read_bytes() == b"B" * 8


def test_info_reads_a_good_pt_without_torch_and_warns(tiny_artifacts: Path, tmp_path: Path) -> None:
    env = torch_blocked(tmp_path)
    result = run_cli("info", str(tiny_artifacts / "music_producter.pt"), env=env)
    assert result.returncode == 0, result.stderr
    assert "methods  forward, zero_state" in result.stdout and "is a program" in result.stdout
    assert "LSTM hidden 32" in result.stdout


def test_a_damaged_model_that_still_runs_is_refused_by_its_notes(tiny_artifacts: Path, seed: Path,
                                                                 tmp_path: Path) -> None:
    # bytes flipped in a .pt's decode constants load fine (torch.jit.load checks no CRC) and made
    # steps of hours, written as a MIDI file no reader takes back
    import torch
    extra = {TORCHSCRIPT_SPEC_FILE: ""}
    module = torch.jit.load(str(tiny_artifacts / "music_producter.pt"), _extra_files=extra)  # our own file
    with torch.no_grad():
        module.scale.mul_(1000.0)
    damaged = tmp_path / "damaged.pt"
    torch.jit.save(module, str(damaged), _extra_files=extra)
    with pytest.raises(ArtifactError, match="made a note outside its own spec .*the file is damaged"):
        generate_files(load(damaged), seed, tmp_path / "out.mid", GenerationOptions(notes=16, seed=0))
    assert not (tmp_path / "out.mid").exists()


def test_a_generator_shared_by_threads_gives_the_same_notes(tiny_artifacts: Path, tiny_checkpoint: Path,
                                                            seed_notes: np.ndarray) -> None:
    for model in (tiny_checkpoint, tiny_artifacts / "music_producter.pt", tiny_artifacts / "music_producter.onnx"):
        generator = load(model, threads=1)
        alone = {s: generator.generate(seed_notes, 48, seed=s) for s in range(6)}
        together: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def work(s: int) -> None:
            try:
                together[s] = generator.generate(seed_notes, 48, seed=s)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for s in range(6):
            np.testing.assert_array_equal(together[s], alone[s], err_msg=f"{model.name}, seed {s}")


def test_info_shows_the_config_in_use_and_the_licence(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = mpx(capsys, "info", str(tiny_checkpoint))
    assert code == 0
    assert "LSTM hidden 32, layers 1, pitch embedding 8; bins: step 48" in out and "licence" in out

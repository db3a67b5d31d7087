"""A runtime-only install, as a user gets it with `pip install .` (no extras): a wheel built
from this repository into a fresh virtual environment without torch. The bundled ONNX model is
found inside the installed package, and `mpx run --backend onnx` makes music."""
from __future__ import annotations

import shlex
import subprocess
import venv
from pathlib import Path

import pytest

from mpx.runtime import read_notes

from conftest import ROOT

pytestmark = pytest.mark.slow  # a wheel build and a venv install


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("runtime-only")
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    python = home / "venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"pip install of the runtime failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return home / "venv"


def test_runtime_install_has_no_torch(runtime_env: Path) -> None:
    probe = subprocess.run([str(runtime_env / "bin" / "python"), "-c", "import torch"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr


def test_runtime_install_generates_from_the_bundled_onnx_model(runtime_env: Path, seed_midi: Path, tmp_path: Path) -> None:
    out = tmp_path / "song.mid"
    done = subprocess.run([str(runtime_env / "bin" / "mpx"), "run", str(seed_midi), "--backend", "onnx",
                           "--notes", "64", "--seed", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(read_notes(out)) == 64
    where = subprocess.run([str(runtime_env / "bin" / "python"), "-c",
                            "from mpx.runtime import bundled; print(bundled('onnx'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    bundled = Path(where.stdout.strip())
    assert bundled.is_file() and runtime_env in bundled.parents  # from the wheel, not the checkout
    assert ROOT not in bundled.parents


def test_runtime_install_explains_what_torch_commands_need(runtime_env: Path, seed_midi: Path, tmp_path: Path) -> None:
    # installed from the checkout's folder and run elsewhere: the hint names that folder
    hint = f"pip install '{ROOT}[train]'"
    done = subprocess.run([str(runtime_env / "bin" / "mpx"), "run", str(seed_midi), "--backend", "torchscript",
                           "--out", str(tmp_path / "x.mid")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1 and hint in done.stderr, done.stderr
    train = subprocess.run([str(runtime_env / "bin" / "mpx"), "train", str(seed_midi), "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert train.returncode == 1 and "pip install '.[train]'" in train.stderr  # in the checkout: its path form
    assert "Traceback" not in train.stderr
    for model in ("music_producter.pt", "model.safetensors"):  # read as data: no torch needed
        info = subprocess.run([str(runtime_env / "bin" / "mpx"), "info", str(ROOT / "artifacts" / model)],
                              capture_output=True, text=True, timeout=300)
        assert info.returncode == 0 and "LSTM hidden 256" in info.stdout, info.stderr


def test_the_install_hint_works_as_printed(runtime_env: Path, seed_midi: Path, tmp_path: Path) -> None:
    # (last: it adds matplotlib to the runtime venv) the command mpx prints adds the extra to the
    # installed mpx, never another distribution's mpx
    mpx = str(runtime_env / "bin" / "mpx")
    refused = subprocess.run([mpx, "plot", str(seed_midi), "--out", str(tmp_path / "roll.png")],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    hint = refused.stderr.split("needs matplotlib: ", 1)[1].strip()
    assert hint == f"pip install '{ROOT}[plot]'"
    done = subprocess.run([str(runtime_env / "bin" / "python"), "-m", *shlex.split(hint), "-q"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    plotted = subprocess.run([mpx, "plot", str(seed_midi), "--out", str(tmp_path / "roll.png")],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert plotted.returncode == 0 and (tmp_path / "roll.png").is_file(), plotted.stderr

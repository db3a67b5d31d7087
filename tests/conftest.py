"""Shared fixtures: the copied test data, a tiny trained checkpoint, exported artifacts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


ROOT = Path(__file__).resolve().parents[1]


DATA = ROOT / "tests" / "data"


MIDI_DIR = DATA / "midi"


BAD_DIR = DATA / "bad-midi"


SEEDS_DIR = DATA / "seeds"


ARTIFACTS = ROOT / "artifacts"


def _tiny_model():  # type: ignore[no-untyped-def]
    from mpx.runtime.config import ModelConfig
    return ModelConfig(hidden=32, embedding=8, step_bins=48, duration_bins=40, velocity_bins=16)


TINY_MODEL = _tiny_model()  # the tiny checkpoint's size, bins of other counts than the defaults


# The torch tier's fixtures: they train or export with torch. The torch-free tier (tests/runtime)
# runs on the bundled files only, in a venv without torch, and must never ask for them.
TORCH_TIER_FIXTURES = {"tiny_run", "tiny_checkpoint", "tiny_artifacts", "compiled_artifacts", "cpp_programs"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = [item.nodeid for item in items
             if item.path.parent.name == "runtime" and TORCH_TIER_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if wrong:
        raise pytest.UsageError(f"tests/runtime is the torch-free tier; these ask for a model made with torch: {wrong}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test parses into a cache of the session, never the user's ~/.cache."""
    monkeypatch.setenv("MPX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "note-cache"))


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m mpx ARGS` in a subprocess, as a user would run the `mpx` command."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mpx", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def torch_blocked(folder: Path) -> dict[str, str]:
    """An environment in which `import torch` fails (a package named torch that raises, first
    on PYTHONPATH), for run_cli: what a user without torch installed has."""
    blocker = folder / "block" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    return {"PYTHONPATH": str(blocker.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="session")
def midi_files() -> list[Path]:
    return sorted(MIDI_DIR.glob("*.mid"))


@pytest.fixture(scope="session")
def seed_midi() -> Path:
    return ARTIFACTS / "seed.mid"


@pytest.fixture(scope="session")
def seed_notes(seed_midi: Path) -> np.ndarray:
    from mpx.runtime.midi import read_notes
    return read_notes(seed_midi)


@pytest.fixture()
def seed(tmp_path: Path, seed_midi: Path) -> Path:
    """A copy of the bundled seed in the test's folder (commands may try to overwrite it)."""
    path = tmp_path / "seed.mid"
    shutil.copy(seed_midi, path)
    return path


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def full_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder on a 16 kB file system (a real ENOSPC); needs root to mount, skipped otherwise
    (the monkeypatched tests below cover the same paths everywhere)."""
    path = tmp_path / "full"
    if not _mount_tmpfs(path, "size=16k"):
        pytest.skip("mounting a small tmpfs needs root")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.fixture()
def read_only(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder nobody can write: a read-only tmpfs as root (root ignores permissions), else 0o555."""
    path = tmp_path / "ro"
    if _mount_tmpfs(path, "ro,size=16k"):
        yield path
        subprocess.run(["umount", str(path)], check=False)
        return
    path.mkdir()
    path.chmod(0o555)
    yield path
    path.chmod(0o755)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained for two quick epochs on the six test files (hidden 32)."""
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.loop import train
    from mpx.train.options import TrainOptions

    out = tmp_path_factory.mktemp("tiny-run")
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(out / "cache"), workers=1)
    train(corpus, out, TrainOptions(model=TINY_MODEL, epochs=2, batch_size=8, seq_len=64, primer_len=25, seed=0))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run: Path) -> Path:
    return tiny_run / "best.safetensors"


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """music_producter.pt / .onnx (+ int8) exported from the tiny checkpoint."""
    from mpx.export.api import export_artifacts
    from mpx.export.options import ExportOptions

    out = tmp_path_factory.mktemp("tiny-artifacts")
    export_artifacts(tiny_checkpoint, out, ExportOptions(quantize="int8"), echo=lambda _: None)
    return out


# -- the deployment targets, built once per session ------------------------------------------
def missing_cpp_tools() -> str | None:
    """What building the C++ examples needs and this machine lacks, or None."""
    import shutil
    if shutil.which("cmake") is None:
        return "cmake not found on PATH"
    cxx = os.environ.get("CXX")
    if not (shutil.which(cxx) if cxx else any(shutil.which(c) for c in ("c++", "g++", "clang++"))):
        return f"no C++ compiler found ({'CXX=' + cxx if cxx else 'c++, g++, clang++'})"
    if not (shutil.which("make") or shutil.which("ninja")):
        return "neither make nor ninja found for cmake to build with"
    return None


@pytest.fixture(scope="session")
def cpp_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """examples/libtorch built against the pip wheel's libtorch (-j2: two cores): the
    TorchScript program and the AOTInductor one."""
    import shutil
    torch = pytest.importorskip("torch", reason="torch not installed: the examples link libtorch")
    missing = missing_cpp_tools()
    if missing:
        print(f"skipping the C++ examples: {missing}")
        pytest.skip(f"cannot build the libtorch examples: {missing}")
    # $MPX_CPP_BUILD: a build folder kept between sessions (cmake rebuilds what changed)
    kept = os.environ.get("MPX_CPP_BUILD")
    build = Path(kept) if kept else tmp_path_factory.mktemp("libtorch-build")
    configure = ["cmake", "-S", str(ROOT / "examples" / "libtorch"), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if not shutil.which("make"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    programs = {"torchscript": build / "mpx_generate", "aoti": build / "mpx_generate_aoti"}
    assert all(p.is_file() for p in programs.values()), f"the build made no {programs}"
    return programs


@pytest.fixture(scope="session")
def compiled_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """music_producter.pt2 and .aoti.pt2 of the bundled checkpoint, exported (and checked
    against eager) by `mpx export` once per session: the AOTInductor compile takes a while."""
    from mpx.export.api import export_artifacts
    from mpx.export.options import ExportOptions

    out = tmp_path_factory.mktemp("compiled")
    for fmt in ("pt2", "aoti"):
        export_artifacts(ARTIFACTS / "model.safetensors", out, ExportOptions(format=fmt), echo=print)
    return out


# -- worst parity differences, printed at the end of the run (and kept for the README) --------
PARITY_LOG: dict[str, dict[str, float]] = {}


def record_parity(model: str, pair: str, max_diff: dict[str, float]) -> None:
    key = f"{model}: {pair}"
    previous = PARITY_LOG.get(key, {})
    PARITY_LOG[key] = {k: max(v, previous.get(k, 0.0)) for k, v in max_diff.items()}


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not PARITY_LOG:
        return
    terminalreporter.section("worst parity differences (max |a - b| over every case)")
    names = list(next(iter(PARITY_LOG.values())))
    terminalreporter.write_line(f"{'model: pair':<46}" + "".join(f"{n:>14}" for n in names))
    for key, diffs in PARITY_LOG.items():
        terminalreporter.write_line(f"{key:<46}" + "".join(f"{diffs[n]:>14.2e}" for n in names))


# -- `make test` leaves the checkout as it found it -------------------------------------------
# With MPX_CHECK_CHECKOUT=1 (the Makefile's test targets set it) the run fails when the tests
# changed what `git status` shows: a tracked file rewritten, or a new file that .gitignore does
# not cover. Off by default, so that editing while a run is under way is no failure.
CHECKOUT_BEFORE: list[str] = []


def checkout_status() -> list[str]:
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True)
    return done.stdout.splitlines() if done.returncode == 0 else []


def pytest_sessionstart(session) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("MPX_CHECK_CHECKOUT") == "1":
        CHECKOUT_BEFORE[:] = ["checked", *checkout_status()]


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    if not CHECKOUT_BEFORE:
        return
    changed = sorted(set(checkout_status()) - set(CHECKOUT_BEFORE[1:]))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.section("the tests changed the checkout (git status)")
            for line in changed:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def graph_run(backend, notes, h0, c0, uniforms, temperature, top_p, controls=None, given=None):  # type: ignore[no-untyped-def]
    """One graph call with contract v3's inputs from v2-style ones: temperature/top_p of [4] given
    to every row, controls not given, no attribute of the next note given."""
    from mpx.runtime import controls as control_rules
    rows = np.asarray(notes).shape[0]
    per_row = [np.broadcast_to(np.asarray(v, np.float32), (rows, 4)) for v in (temperature, top_p)]
    controls = control_rules.unset(rows) if controls is None else controls
    given = np.full((rows, 4), -1.0, np.float32) if given is None else given
    return backend.run(notes, h0, c0, uniforms, *per_row, controls, given)

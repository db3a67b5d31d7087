"""A newcomer's first hour (issue 22): the install, the Makefile, what the tests and the README's
commands leave in the checkout, and the help and messages of the command line."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mpx.runtime import versions
from mpx.runtime.versions import DISTRIBUTION, install_hint

from conftest import ROOT


def tracked_text_files() -> list[tuple[Path, str]]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    texts = []
    for name in filter(None, listed.stdout.split("\0")):
        path = ROOT / name
        if path.suffix in {".py", ".md", ".toml", ".cpp", ".h", ".mjs", ".js", ".html", ".txt", ""} and path.is_file():
            try:
                texts.append((path, path.read_text()))
            except UnicodeDecodeError:
                continue
    return texts


# -- the install --------------------------------------------------------------------------------
def test_the_distribution_name_is_not_the_unrelated_mpx_of_the_package_index() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "mpx"
    assert list(project["scripts"]) == ["mpx"]  # the command keeps its name
    assert all(DISTRIBUTION in extra for extra in project["optional-dependencies"]["dev"] if "[" in extra)
    assert versions.versions()["mpx"] == project["version"]  # found under the distribution's name


# a hint that names the bare distribution mpx, which would fetch the unrelated mpx 0.1
BAD_HINT = re.compile(r"""pip install\s+(-\S+\s+)*['"]?mpx(\[|['"\s]|$)""", re.MULTILINE)


def test_every_install_hint_names_a_path_or_this_distribution() -> None:
    bad = [f"{path.relative_to(ROOT)}: {match.group(0)!r}" for path, text in tracked_text_files()
           for match in BAD_HINT.finditer(text)]
    assert bad == []


class Installed:
    """importlib.metadata's view of an installed mpx with this direct_url.json (None: from an index)."""

    def __init__(self, origin: dict | None) -> None:
        self.origin = origin

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.origin) if name == "direct_url.json" and self.origin else None


@pytest.mark.parametrize("origin, cwd, hint", [
    (None, "elsewhere", f"pip install '{DISTRIBUTION}[plot]'"),  # from the package index
    ({"url": "file:///wheels/mpx_music-0.1.0-py3-none-any.whl", "archive_info": {}}, "elsewhere",
     f"pip install '{DISTRIBUTION}[plot]'"),  # a wheel: pip completes the installed mpx-music
    ({"url": "file:///src/mpx", "dir_info": {"editable": True}}, "checkout", "pip install '.[plot]'"),
    ({"url": "file:///src/mpx", "dir_info": {}}, "elsewhere", "pip install '/src/mpx[plot]'"),
])
def test_the_install_hint_says_how_this_mpx_was_installed(origin: dict | None, cwd: str, hint: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # first on the path: the build's egg-info that `pip install` leaves in a checkout (no record)
    monkeypatch.setattr(versions.metadata, "distributions", lambda name: [Installed(None), Installed(origin)])
    monkeypatch.setattr(versions.Path, "cwd", lambda: Path("/src/mpx" if cwd == "checkout" else "/tmp"))
    assert install_hint("plot") == hint


def test_the_missing_extra_message_carries_the_hint() -> None:
    from mpx.runtime.errors import missing_extra
    message = str(missing_extra("plotting", "matplotlib", extra="plot"))
    assert message == f"plotting needs matplotlib: {install_hint('plot')}"


# -- the Makefile and the checkout ----------------------------------------------------------------
def make_dry_run(target: str) -> list[str]:
    done = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def pip_installs(lines: list[str]) -> list[tuple[str, str]]:
    """(venv, what) of every `VENV/bin/python -m pip install ...` of mpx itself."""
    found = re.findall(r"^(\S+)/bin/python -m pip install -q (.+)$", "\n".join(lines), re.MULTILINE)
    return [(venv, what) for venv, what in found if what.split()[-1] in (".", "'.[dev]'")]


def test_make_run_and_make_test_keep_one_install_mode_per_venv() -> None:
    run, test = make_dry_run("run"), make_dry_run("test")
    copies = {venv for venv, what in pip_installs(run + test) if not what.startswith("-e ")}
    editable = {venv for venv, what in pip_installs(run + test) if what.startswith("-e ")}
    assert copies == {".venv-runtime"} and editable == {".venv"}  # `make run` never replaces the editable mpx
    assert not any("torch" in line for line in run)  # the runtime venv stays torch-free
    assert any(line.startswith(".venv-runtime/bin/mpx run") for line in run)
    assert any(".venv-runtime/bin/python -m pytest" in line for line in test)  # the torch-free tier
    assert sum("MPX_CHECK_CHECKOUT=1" in line for line in test) == 2  # both tiers leave the checkout clean


def test_litter_for_the_checkout_guard() -> None:
    target = os.environ.get("MPX_TEST_LITTER")
    if not target:
        pytest.skip("a helper: test_make_test_fails_when_tests_change_the_checkout runs it")
    Path(target).write_text("left by a test\n")


def test_make_test_fails_when_tests_change_the_checkout() -> None:
    litter = ROOT / f"litter-{os.getpid()}.txt"
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"{Path(__file__).name}::test_litter_for_the_checkout_guard"],
                              cwd=Path(__file__).parent, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "MPX_CHECK_CHECKOUT": "1", "MPX_TEST_LITTER": str(litter)})
    finally:
        litter.unlink(missing_ok=True)
    assert done.returncode == 1, done.stdout
    assert f"?? {litter.name}" in done.stdout and "the tests changed the checkout" in done.stdout


def test_web_test_draws_its_screenshot_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import test_web
    monkeypatch.delenv("MPX_WEB_SCREENSHOT", raising=False)
    assert tmp_path in test_web.screenshot_path(tmp_path).parents
    assert "MPX_WEB_SCREENSHOT=$(CURDIR)/examples/web/screenshot.png" in (ROOT / "Makefile").read_text()


# -- the terminal ---------------------------------------------------------------------------------
class Screen:
    """Enough of a terminal to see what a user sees: text, CR, LF, and the CSI sequences rich
    draws its live display with (cursor moves, erasing lines); colours are ignored."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0
        self.raw = ""  # everything written, drawn over or not

    def feed(self, text: str) -> "Screen":
        self.raw += text
        for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[^\[]|.|\n", text, re.DOTALL):
            if token.startswith("\x1b["):
                self._csi(token[2:-1], token[-1])
            elif token == "\n":
                self.row, self.col = self.row + 1, 0
            elif token == "\r":
                self.col = 0
            elif not token.startswith("\x1b") and token >= " ":
                self._put(token)
        return self

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _put(self, char: str) -> None:
        line = self._line()
        line.extend(" " * (self.col + 1 - len(line)))
        line[self.col] = char
        self.col += 1

    def _csi(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row += n
        elif final == "G":
            self.col = n - 1
        elif final == "K":
            line = self._line()
            if params in ("", "0"):
                del line[self.col:]
            else:
                line.clear()

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


def in_a_terminal(args: list[str], timeout: float = 300, **env: str) -> tuple[int, Screen]:
    """Run a command with stdout and stderr on one pseudo-terminal, as in a terminal window."""
    import pty
    import select
    main_fd, child_fd = pty.openpty()
    process = subprocess.Popen(args, stdin=child_fd, stdout=child_fd, stderr=child_fd, close_fds=True,
                               env={**os.environ, "COLUMNS": "80", "LINES": "40", "TERM": "xterm", **env})
    os.close(child_fd)
    chunks = []
    while True:
        ready, _, _ = select.select([main_fd], [], [], timeout)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    return process.wait(timeout=30), Screen().feed(b"".join(chunks).decode("utf-8", "replace"))


BARS_AND_REPORTS = """
import logging, sys, time
from mpx.progress import LogHandler, bars, echo
handler = LogHandler(); handler.setFormatter(logging.Formatter("mpx: %(message)s"))
logging.basicConfig(level=logging.WARNING, handlers=[handler])
with bars() as progress:
    for i in range(1, 4):
        progress.update("parity onnx", i, 3)
        time.sleep(0.25)
        echo(f"report line {i}: " + "x" * 50)
        logging.getLogger("mpx").warning("warning %d", i)
        time.sleep(0.25)
echo("after the bars")
"""


def test_a_progress_bar_never_overwrites_a_report() -> None:
    code, screen = in_a_terminal([sys.executable, "-c", BARS_AND_REPORTS], timeout=60)
    assert code == 0, screen.text()
    shown = [line for line in screen.text() if line]
    expected = [line for i in range(1, 4) for line in (f"report line {i}: " + "x" * 50, f"mpx: warning {i}")]
    assert shown == [*expected, "after the bars"]  # every line whole, in order; the bar gone


@pytest.mark.slow
def test_training_bar_names_the_epoch_and_reports_stay(tmp_path: Path) -> None:
    from conftest import MIDI_DIR
    code, screen = in_a_terminal([sys.executable, "-m", "mpx", "train", str(MIDI_DIR), "--out", str(tmp_path / "run"),
                                  "--epochs", "2", "--hidden", "16", "--embedding", "8", "--batch-size", "8",
                                  "--seq-len", "64", "--workers", "1"], MPX_CACHE_DIR=str(tmp_path / "cache"))
    lines = [line for line in screen.text() if line]
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == ["epoch   1", "epoch   2"]
    assert lines[-1].startswith("best checkpoint:")
    assert "epoch 1/2 train" in screen.raw and "epoch 2/2 validate" in screen.raw  # what the bar said


@pytest.mark.slow
def test_export_report_and_int8_figures_stay_on_screen(tiny_checkpoint: Path, tmp_path: Path) -> None:
    code, screen = in_a_terminal([sys.executable, "-m", "mpx", "export", "--checkpoint", str(tiny_checkpoint),
                                  "--format", "onnx", "--quantize", "int8", "--out-dir", str(tmp_path)])
    lines = [line for line in screen.text() if line]
    assert code == 0, lines
    assert [line.split(" ")[0] for line in lines] == ["parity", "int8", "wrote", "wrote"], lines
    assert "parity onnx" in screen.raw.replace("\x1b", " ")  # the bar was drawn, then gone


LIBRARY_WARNING = """
import sys, warnings
import mpx.runtime.artifacts as artifacts
real = artifacts.load
def load(*args, **kwargs):
    warnings.warn("a library's note to programmers", FutureWarning)
    return real(*args, **kwargs)
artifacts.load = load
from mpx.cli import main
sys.argv = ["mpx", "run", {seed!r}, "--notes", "4", "--seed", "0", "--out", {out!r}]
main()
"""


@pytest.mark.parametrize("asked", [False, True])
def test_library_warnings_stay_out_of_the_way_unless_asked_for(asked: bool, tmp_path: Path, seed_midi: Path) -> None:
    script = LIBRARY_WARNING.format(seed=str(seed_midi), out=str(tmp_path / "x.mid"))
    env = {**os.environ, "PYTHONWARNINGS": "default"} if asked else {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert ("FutureWarning" in done.stderr) == asked, done.stderr


# -- help and messages ----------------------------------------------------------------------------
COMMANDS = ["", "train", "export", "run", "info", "eval", "notes", "plot", "serve"]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpx", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "80", **env})


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_whole(command: str) -> None:
    done = cli(*([command] if command else []), "-h")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in done.stdout and not any(line.endswith("...") for line in lines[1:])  # nothing cut
    assert "<bool>" not in done.stdout and "--no-" not in done.stdout  # flags take no value
    assert done.stdout == cli(*([command] if command else []), "--help").stdout
    assert len(lines) <= {"": 25, "train": 85, "run": 70, "eval": 45}.get(command, 40)  # was 126 for run, cut by '…'


def test_help_shows_choices_defaults_and_brackets() -> None:
    run = cli("run", "-h").stdout
    assert "<onnx|torchscript|eager|pt2|aoti>" in run and "[default: 256;" in run and "[default: stateful]" in run
    assert "pip install 'mpx-music[plot]'" in " ".join(cli("plot", "-h").stdout.split())  # rich markup swallowed `[plot]`
    assert "onnx+torchscript" in cli("export", "-h").stdout
    assert "Exit status: 0 done; 1 an error" in " ".join(cli("-h").stdout.split())


@pytest.mark.parametrize("args, message", [
    (["run", "{seed}", "--mode", "bogus"], "mpx: error: --mode must be one of stateful, window, got 'bogus'"),
    (["run", "{seed}", "--notes", "1e3"], "mpx: error: --notes must be an integer, got '1e3'"),
    (["run", "{seed}", "--notes", "0"], "mpx: error: --notes must be an integer 1..10,000,000, got 0"),
    (["export", "-f", "zip"], "mpx: error: -f must be one of onnx, torchscript, pt2, aoti, onnx+torchscript, all, got 'zip'"),
    (["export", "--format=zip"], "mpx: error: --format must be one of"),
    (["train", "{seed}", "--out", "{tmp}/r", "--lr", "fast"], "mpx: error: --lr must be a number, got 'fast'"),
])
def test_messages_name_the_flag_as_typed_and_the_value_as_given(args: list[str], message: str, seed_midi: Path,
                                                                tmp_path: Path) -> None:
    done = cli(*[a.format(seed=seed_midi, tmp=tmp_path) for a in args])
    assert done.returncode == 1, done.stderr  # parse errors and range errors alike
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


# -- an export set is whole -----------------------------------------------------------------------
def test_an_export_refuses_or_removes_the_artifacts_of_other_weights(tiny_checkpoint: Path, tiny_artifacts: Path,
                                                                      tmp_path: Path) -> None:
    from mpx.export.errors import ExportError
    from mpx.export.options import ExportOptions
    from mpx.export.targets import artifact_source, plan
    from mpx.runtime.info import sha256
    from conftest import ARTIFACTS
    out = tmp_path / "out"
    out.mkdir()
    int8 = Path(shutil.copy(tiny_artifacts / "music_producter.int8.onnx", out))  # an earlier export
    assert artifact_source(int8) == sha256(tiny_checkpoint)  # its spec names its checkpoint
    other = ARTIFACTS / "model.safetensors"
    with pytest.raises(ExportError, match="music_producter.int8.onnx: an artifact of other weights"):
        plan(other, out, ExportOptions())
    assert plan(other, out, ExportOptions(force=True)).stale == [int8]  # removed once the new set is in
    assert plan(tiny_checkpoint, out, ExportOptions()).stale == []  # the same weights: it stays beside them
    (out / "music_producter.pt2").write_bytes(b"not an artifact")  # no spec: not of this set
    assert plan(tiny_checkpoint, out, ExportOptions(format="onnx", force=True)).stale == [out / "music_producter.pt2"]


def test_export_refuses_before_importing_torch(tmp_path: Path) -> None:
    from conftest import torch_blocked
    (tmp_path / "music_producter.onnx").write_bytes(b"an earlier export")
    done = subprocess.run([sys.executable, "-m", "mpx", "export", "--out-dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **torch_blocked(tmp_path / "env")})
    assert done.returncode == 1 and "music_producter.onnx: exists; pass --force" in done.stderr, done.stderr


@pytest.mark.slow
def test_a_new_export_leaves_no_int8_of_other_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from mpx.runtime.artifacts import bundled
    first = cli("export", "--checkpoint", str(tiny_checkpoint), "--quantize", "int8", "--out-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    second = cli("export", "--out-dir", str(tmp_path), "--force")  # the bundled checkpoint: other weights
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["music_producter.onnx", "music_producter.pt"]
    assert f"removed {tmp_path / 'music_producter.int8.onnx'}" in second.stdout
    assert "source_sha256" in (tmp_path / "music_producter.onnx").read_bytes().decode("latin-1")
    assert bundled("eager").is_file()


# -- Ctrl-C ---------------------------------------------------------------------------------------
def test_ctrl_c_of_a_multi_process_training_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import MIDI_DIR
    from mpx.cli import main
    from mpx.train import distributed

    def interrupted(options: object, argv: object) -> None:
        raise distributed.LaunchInterrupted("interrupted (signal SIGINT)")

    monkeypatch.setattr(distributed, "launch", interrupted)
    monkeypatch.setattr(sys, "argv", ["mpx", "train", str(MIDI_DIR), "--nproc", "2", "--device", "cpu",
                                      "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "mpx: interrupted (signal SIGINT)\n"


# -- surprises ------------------------------------------------------------------------------------
def test_eval_of_one_file_scores_it(seed_midi: Path, tmp_path: Path) -> None:
    from mpx.runtime.artifacts import bundled
    env = {"MPX_CACHE_DIR": str(tmp_path / "cache")}
    done = cli("eval", str(bundled("onnx")), str(seed_midi), "--mode", "stateful", "--json", **env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files"] == 1 and report["split"] == "all" and report["stateful"]["predictions"] > 1000
    assert done.stderr == ""  # no word about a validation split that eval has nothing to do with
    asked = cli("eval", str(bundled("onnx")), str(seed_midi), "--split", "test", **env)
    assert asked.returncode == 1
    assert re.search(r"none of the 1 MIDI files is on the test side of the split \(1 (train|val)\); --split all takes "
                     r"every file", asked.stderr), asked.stderr


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The matplotlib figures mpx saves, kept for a look at their axes."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    figures: list = []
    real = Figure.savefig

    def keep(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def legend_of(ax) -> list[str]:  # type: ignore[no-untyped-def]
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_plot_of_a_file_names_notes_on_the_axis_and_calls_none_generated(seed_midi: Path, tmp_path: Path,
                                                                          drawn: list) -> None:
    from mpx.runtime.notes import note_name
    from mpx.runtime.plot import plot_file
    assert [note_name(p) for p in (21, 60, 61, 69, 108)] == ["A0", "C4", "C#4", "A4", "C8"]
    plot_file(seed_midi, tmp_path / "roll.png")
    (ax,) = drawn[-1].axes
    assert legend_of(ax) == ["notes (1358 notes)"]
    assert "C4" in [label.get_text() for label in ax.get_yticklabels()]
    plot_file(seed_midi, tmp_path / "primed.png", primer_notes=100)
    assert legend_of(drawn[-1].axes[0]) == ["primer (100 notes)", "after the primer (1258 notes)"]


def test_run_plot_draws_one_roll_per_take(seed_midi: Path, tmp_path: Path, drawn: list) -> None:
    from mpx.runtime.artifacts import load
    from mpx.runtime.generate import GenerationOptions
    from mpx.runtime.run import generate_files
    generate_files(load(), seed_midi, tmp_path / "take.mid", GenerationOptions(notes=16, num_outputs=3, seed=0),
                   plot=tmp_path / "takes.png")
    axes = drawn[-1].axes
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == ["seed.mid + mpx - take-1.mid", "take-2.mid", "take-3.mid"]
    assert all(legend_of(ax)[1] == "generated (16 notes)" for ax in axes)


def test_a_directory_given_as_a_model_is_named_as_one(tmp_path: Path) -> None:
    from mpx.runtime.artifacts import load
    from mpx.runtime.errors import ArtifactError
    with pytest.raises(ArtifactError, match=f"^{re.escape(str(tmp_path))}: is a directory; give a model file in it"):
        load(tmp_path)


@pytest.mark.parametrize("name, writer, message", [
    ("x.wav", "write_midi", "x.wav: writes .mid or .midi files only (not '.wav')"),
    ("x", "write_midi", "x: writes .mid or .midi files only (the path has no suffix)"),
    ("x.mid", "write_csv", "x.mid: writes .csv files only (not '.mid')"),
])
def test_the_python_api_writes_the_format_the_suffix_says(name: str, writer: str, message: str, tmp_path: Path,
                                                          seed_notes) -> None:  # type: ignore[no-untyped-def]
    import mpx.runtime as runtime
    from mpx.runtime.errors import OptionsError
    with pytest.raises(OptionsError, match=re.escape(message)):
        getattr(runtime, writer)(seed_notes[:8], tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_the_generation_report_shows_progress(tmp_path: Path) -> None:
    from conftest import MIDI_DIR
    from mpx.runtime.artifacts import load
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.evaluate import generation_split
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1)
    ticks: list[tuple[int, int]] = []
    report = generation_split(load(), corpus, "all", files=3, on_progress=lambda done, total: ticks.append((done, total)))
    assert ticks == [(1, 3), (2, 3), (3, 3)] and len(report["rows"]) == 3
    code, screen = in_a_terminal([sys.executable, "-m", "mpx", "eval", str(ROOT / "artifacts" / "music_producter.onnx"),
                                  str(MIDI_DIR), "--split", "all", "--mode", "stateful", "--generation", "--files", "2"],
                                 MPX_CACHE_DIR=str(tmp_path / "cache"))
    assert code == 0, screen.text()
    assert "generate" in screen.raw and "generation: 2 pieces" in "\n".join(screen.text())  # a bar, then gone


def test_a_librarys_parameter_is_named_by_the_flag_as_typed(seed_midi: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from clitools import mpx
    from mpx.runtime import run as running
    from mpx.runtime.errors import OptionsError
    # the real OptionsError.field of the libraries' checks, named by the command's flag
    code, _, err = mpx(capsys, "run", str(seed_midi), "--num-outputs", "0", "--out", str(tmp_path / "x.mid"))
    assert code == 1 and err.startswith("mpx: error: --num-outputs must be an integer 1..4096, got 0")
    code, _, err = mpx(capsys, "run", str(seed_midi), "--primer-from", "5000", "--out", str(tmp_path / "x.mid"))
    assert code == 1 and err.startswith("mpx: error: --primer-from '5000' is past the end of"), err

    def refuse(*args: object, **kwargs: object) -> None:  # a parameter that is no flag of the command
        raise OptionsError("streams must give one stream per row (1), got 2", "streams")

    monkeypatch.setattr(running, "generate_files", refuse)
    code, _, err = mpx(capsys, "run", str(seed_midi), "--out", str(tmp_path / "y.mid"))
    assert code == 1 and err == "mpx: error: streams must give one stream per row (1), got 2\n"

"""Issue 21: writes that cannot race, whole sets, Ctrl-C from the first moment, stale leftovers
of killed processes, `mpx eval` on what it cannot score, the example web server on bad paths
and idle connections. Each case failed before the change it tests."""
from __future__ import annotations

import errno
import http.client
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import GenerationOptions, load, read_notes
from mpx.runtime.atomic import Exists, WriteError, atomic_set, clean_stale, write_bytes
from mpx.runtime.midi import write_midi
from mpx.runtime.run import generate_files

from conftest import ARTIFACTS, ROOT

SEED = ARTIFACTS / "seed.mid"
ONNX = ARTIFACTS / "music_producter.onnx"


def mpx(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mpx ARGS` in this process: (code, out, err); anything but SystemExit fails the test."""
    from mpx.cli import main
    argv = sys.argv
    sys.argv = ["mpx", *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def child(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """The `mpx` command in its own process group, SIGINT at its default as on a terminal (a CI
    job started in the background inherits it ignored)."""
    return subprocess.Popen([sys.executable, "-m", "mpx", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".mpx-" in p.name)


# == outputs are claimed atomically ===========================================================
def test_an_output_written_meanwhile_is_not_replaced_without_force(tmp_path: Path) -> None:
    """What `exists? then write` misses: the file appears after the check. Without --force the
    write claims the name atomically (a link that fails if the name exists)."""
    target = tmp_path / "o.mid"
    notes = read_notes(SEED)[:20]
    target.write_bytes(b"another process's output")
    with pytest.raises(Exists, match=r"o\.mid: exists .*--force"):
        write_midi(notes, target, replace=False)
    with pytest.raises(Exists):
        write_bytes(target, b"mine", replace=False)
    assert target.read_bytes() == b"another process's output"
    assert litter(tmp_path) == []
    write_midi(notes, target, replace=True)  # --force replaces
    np.testing.assert_array_equal(read_notes(target), read_notes(target))
    assert len(read_notes(target)) == 20


def test_of_threads_claiming_one_output_exactly_one_wins(tmp_path: Path) -> None:
    target = tmp_path / "o.bin"
    start = threading.Barrier(8)
    won: list[int] = []
    lost: list[int] = []

    def write(i: int) -> None:
        start.wait()
        try:
            write_bytes(target, f"writer {i}".encode() * 10000, replace=False)
            won.append(i)
        except Exists:
            lost.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    assert target.read_bytes() == f"writer {won[0]}".encode() * 10000
    assert litter(tmp_path) == []


# == multi-output runs commit the whole set or nothing ========================================
def _run_into(tmp_path: Path, k: int = 4, **kwargs: object):  # type: ignore[no-untyped-def]
    return generate_files(load(ONNX), SEED, tmp_path / "take.mid", GenerationOptions(notes=16, num_outputs=k, seed=1),
                          **kwargs)


def test_a_full_disk_midway_through_a_set_leaves_none_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.runtime import notes_csv, run
    written = []

    def save_until_full(notes: np.ndarray, path: Path, **options: object) -> None:
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        notes_csv.save_any(notes, path, **options)

    monkeypatch.setattr(run, "save_any", save_until_full)
    with pytest.raises(WriteError, match="no space left"):
        _run_into(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no take-1, take-2, no staging folder


def test_a_set_claimed_meanwhile_by_another_run_leaves_none_of_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process writes take-3 while this run generates: this run writes none of its
    takes (all or nothing), and take-3 stays the other process's."""
    from mpx.runtime import notes_csv, run

    def save_and_race(notes: np.ndarray, path: Path, **options: object) -> None:
        notes_csv.save_any(notes, path, **options)
        if path.name == "take-4.mid":
            (tmp_path / "take-3.mid").write_bytes(b"another run")

    monkeypatch.setattr(run, "save_any", save_and_race)
    with pytest.raises(Exists, match="take-3.mid: exists"):
        _run_into(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take-3.mid"]
    assert (tmp_path / "take-3.mid").read_bytes() == b"another run"


def test_an_export_set_into_a_folder_another_export_filled_is_refused_whole(tmp_path: Path) -> None:
    first = [tmp_path / "music_producter.onnx", tmp_path / "music_producter.pt"]
    with atomic_set(first, replace=False) as staged:
        for path in staged.values():
            path.write_bytes(b"first export")
    with pytest.raises(Exists):
        with atomic_set([tmp_path / "a.onnx", *first], replace=False) as staged:
            for path in staged.values():
                path.write_bytes(b"second export")
    assert not (tmp_path / "a.onnx").exists()  # placed, then taken back: the set is whole or absent
    assert {p.read_bytes() for p in first} == {b"first export"}
    assert litter(tmp_path) == []


@pytest.mark.slow
def test_parallel_runs_into_one_output_leave_one_winner_and_the_rest_refused(tmp_path: Path) -> None:
    """5 `mpx run --out o.mid` at once, seeds 0-4, no --force: before, all 5 said `wrote o.mid`
    and 4 results were silently replaced."""
    out = tmp_path / "o.mid"
    runs = [child("run", str(SEED), "--out", str(out), "--notes", "3000", "--seed", str(i)) for i in range(5)]
    results = [(p.communicate(timeout=300), p.returncode) for p in runs]
    won = [i for i, ((stdout, _), code) in enumerate(results) if code == 0]
    assert len(won) == 1, results
    for i, ((stdout, stderr), code) in enumerate(results):
        if i != won[0]:
            assert code == 1 and stderr.count("\n") == 1 and "o.mid: exists" in stderr, stderr
    again = tmp_path / "again.mid"
    assert subprocess.run([sys.executable, "-m", "mpx", "run", str(SEED), "--out", str(again), "--notes", "3000",
                           "--seed", str(won[0])], capture_output=True).returncode == 0
    np.testing.assert_array_equal(read_notes(out), read_notes(again))  # the winner's notes, whole
    assert litter(tmp_path) == []


@pytest.mark.slow
def test_two_parallel_exports_into_one_folder_cannot_both_succeed(tmp_path: Path) -> None:
    exports = [child("export", "--format", "onnx", "--out-dir", str(tmp_path)) for _ in range(2)]
    results = [(p.communicate(timeout=600), p.returncode) for p in exports]
    assert sorted(code for _, code in results) == [0, 1], results
    (_, err), _ = next(r for r in results if r[1] == 1)
    assert "exists" in err and err.strip().count("\n") == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["music_producter.onnx"]


# == leftovers of kill -9 are stale and removed at the next write there =======================
def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_leftovers_of_killed_processes_go_at_the_next_write_into_their_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pid = _dead_pid()
    stage = tmp_path / f".staging.mpx-{pid}-0a1b2c3d.tmp"
    stage.mkdir()
    (stage / "music_producter.onnx").write_bytes(b"half an export")
    (tmp_path / f".o.mid.mpx-{pid}-deadbeef.tmp").write_bytes(b"half a file")
    (tmp_path / ".mpx-train.lock").write_text(f"{pid}\n")  # a training killed by kill -9
    code, _, err = mpx(capsys, "notes", str(SEED), "--out", str(tmp_path / "seed.csv"))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.csv"]


def test_a_live_trainings_lock_and_a_live_writers_temporary_stay(tmp_path: Path) -> None:
    import fcntl
    lock = tmp_path / ".mpx-train.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held, as a running training holds it
    mine = tmp_path / f".o.mid.mpx-{os.getpid()}-0123abcd.tmp"
    mine.write_bytes(b"being written")
    try:
        assert clean_stale(tmp_path) == []
        assert lock.exists() and mine.exists()
    finally:
        os.close(fd)


def test_a_leftover_whose_pid_was_reused_by_a_newer_process_is_stale(tmp_path: Path) -> None:
    """A pid is reused once its process is gone (containers reuse small pids quickly): a
    process that started after the temporary was last written is not its writer."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("process start times are read from /proc")
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        leftover = tmp_path / f".o.mid.mpx-{newer.pid}-0123abcd.tmp"
        leftover.write_bytes(b"half a file")
        an_hour_ago = time.time() - 3600
        os.utime(leftover, (an_hour_ago, an_hour_ago))
        assert clean_stale(tmp_path) == [leftover]
    finally:
        newer.kill()
        newer.wait()


@pytest.mark.slow
def test_kill_9_leftovers_of_train_and_export_are_removed_by_the_next_command(tmp_path: Path) -> None:
    from conftest import MIDI_DIR
    run = tmp_path / "run"
    train = child("train", str(MIDI_DIR), "--out", str(run), "--epochs", "50", "--hidden", "16", "--embedding", "4",
                  "--workers", "1")
    deadline = time.monotonic() + 120
    while not (run / ".mpx-train.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(train.pid, signal.SIGKILL)
    train.wait()
    assert (run / ".mpx-train.lock").exists()
    export = child("export", "--format", "onnx", "--out-dir", str(run))
    deadline = time.monotonic() + 300
    while not any(".staging." in p.name for p in run.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(export.pid, signal.SIGKILL)
    export.wait()
    assert any(".staging." in p.name for p in run.iterdir())
    done = subprocess.run([sys.executable, "-m", "mpx", "notes", str(SEED), "--out", str(run / "seed.csv")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert litter(run) == [] and not (run / ".mpx-train.lock").exists()


# == Ctrl-C from the first moment =============================================================
COMMANDS = {  # each parses into a fresh cache ({n}): the parse workers are part of the test
    "run": ["run", str(SEED), "--notes", "200000", "--out", "{tmp}/o.mid"],
    "export": ["export", "--format", "onnx", "--out-dir", "{tmp}/export"],
    "eval": ["eval", str(ONNX), str(ROOT / "tests" / "data" / "midi"), "--split", "all",
             "--stride", "1", "--threads", "1", "--cache-dir", "{tmp}/c{n}"],  # every window: seconds of work even on a fast machine
    "train": ["train", str(ROOT / "tests" / "data" / "midi"), "--out", "{tmp}/run{n}", "--epochs", "1", "--hidden", "8",
              "--embedding", "4", "--cache-dir", "{tmp}/c{n}"],
    "help": ["--help"],
}
DELAYS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 1.1, 1.4, 1.7, 2.0, 2.5)


def python_start() -> float:
    """Seconds until mpx's first line runs: Python's own start-up and site (an editable
    install's import hook adds ~40 ms), the longest of three. A Ctrl-C before that meets
    Python's default handler, which mpx cannot replace any earlier."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import mpx.start"], check=True)
        times.append(time.monotonic() - started)
    return max(times)


UNRAISABLE = """
import sys, time
from mpx import start
start.exit_on_interrupt(); sys.unraisablehook = start._unraisable; start.raise_on_interrupt()
class Late:
    def __del__(self):
        raise KeyboardInterrupt  # as a Ctrl-C met inside logging's at-fork lock release did in CI
try:
    Late()
    for _ in range(500):
        time.sleep(0.01)
    print("not delivered")
except KeyboardInterrupt:
    print("delivered")
"""


def test_a_ctrl_c_python_cannot_propagate_is_delivered_again_not_printed() -> None:
    """CI once printed 'Exception ignored in: <function _releaseLock ...>' and a traceback: the
    Ctrl-C landed in an at-fork callback. mpx's unraisable hook delivers it again instead."""
    done = subprocess.run([sys.executable, "-c", UNRAISABLE], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "delivered", (done.stdout, done.stderr)
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_at_any_moment_of_a_command_is_one_line_and_exit_130(command: str, tmp_path: Path) -> None:
    """Before, Ctrl-C in the first 0.3-2 s (the imports, before the handler) printed a
    KeyboardInterrupt traceback 4 times in 7; a Ctrl-C inside onnxruntime's import became
    "ImportError: initialization failed"; parse workers printed tracebacks of their own; one
    during Python's shutdown killed the process without a word. Delays count from the moment
    mpx's first line runs (python_start)."""
    start = python_start() + 0.05
    for n, delay in enumerate(DELAYS):
        args = [a.replace("{tmp}", str(tmp_path)).replace("{n}", str(n)) for a in COMMANDS[command]]
        process = child(*args)
        time.sleep(start + delay)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
        if process.returncode == 0 and command == "help":
            continue  # finished before the signal
        where = f"{command} at {start:.2f} + {delay} s"
        assert process.returncode == 130, f"{where}: exit {process.returncode}; stderr {err[-3000:]!r}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and (lines[0] == "mpx: interrupted" or command == "train" and "--resume" in lines[0]), \
            f"{where}: {err[-800:]!r}"
        assert litter(tmp_path) == [] and not (tmp_path / "o.mid").exists()


def test_importing_mpx_changes_no_signal_handler() -> None:
    before = signal.getsignal(signal.SIGINT)
    import mpx.cli  # noqa: F401
    import mpx.start  # noqa: F401
    assert signal.getsignal(signal.SIGINT) is before


def test_the_command_starts_in_the_light_module_that_catches_ctrl_c() -> None:
    """The console script's module is imported before numpy or typer."""
    probe = ("import sys, mpx.start; heavy = [m for m in ('numpy', 'typer', 'onnxruntime', 'pretty_midi') "
             "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^mpx = "mpx\.start:main"', text, re.M)


# == mpx eval: what it cannot score ===========================================================
@pytest.fixture()
def short_midi(tmp_path: Path) -> Path:
    path = tmp_path / "short.mid"
    write_midi(read_notes(SEED)[:50], path)  # fewer than the bundled model's seq_len + 1 (129)
    return path


def test_eval_says_a_mode_scored_nothing_instead_of_cross_entropy_0(short_midi: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = mpx(capsys, "eval", str(ONNX), str(short_midi), "--split", "all")
    assert code == 0, err
    window = next(line for line in out.splitlines() if line.startswith("window"))
    assert "not scored" in window and "50 notes" in window and "129" in window, out
    assert "0.0000" not in window
    code, out, err = mpx(capsys, "eval", str(ONNX), str(short_midi), "--split", "all", "--json")
    import json
    report = json.loads(out)
    assert report["window"]["predictions"] == 0 and "pitch_ce" not in report["window"]
    assert report["stateful"]["predictions"] == 49


@pytest.mark.parametrize("files", ["0", "-1"])
def test_eval_refuses_files_below_one_before_any_work(files: str, short_midi: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mpx(capsys, "eval", str(ONNX), str(short_midi), "--split", "all", "--generation", "--files", files)
    assert code != 0 and err.strip() == f"mpx: error: --files must be an integer >= 1 (pieces to continue), got {files}"


def test_eval_refuses_files_without_generation(short_midi: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = mpx(capsys, "eval", str(ONNX), str(short_midi), "--split", "all", "--files", "3")
    assert code != 0 and "--files sets how many pieces --generation continues" in err


# == the example web server ===================================================================
@pytest.fixture()
def web(tmp_path: Path) -> Iterator[tuple[str, int, object]]:
    spec = importlib.util.spec_from_file_location("mpx_web_serve_trust", ROOT / "examples" / "web" / "serve.py")
    serve = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(serve)
    modules = tmp_path / "node_modules"
    (modules / "onnxruntime-web").mkdir(parents=True)
    server = serve.make_server(ROOT / "examples" / "web", 0, ONNX, SEED, node_modules=modules)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1], serve
    finally:
        server.shutdown()
        server.server_close()


def _status(host: str, port: int, path: str) -> int:
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"))
        head = conn.recv(64)
    assert head.startswith(b"HTTP/1."), f"{path}: the connection was dropped ({head!r})"
    return int(head.split()[1])


@pytest.mark.parametrize("path, expected", [
    ("/%00/etc/passwd", 400), ("/index.html%00.png", 400), ("/%ff%fe", 400), ("/a%0d%0aSet-Cookie:x", 400),
    ("/../../etc/passwd", 404), ("/%2e%2e/%2e%2e/etc/passwd", 404), ("/node_modules/../../../etc/passwd", 404),
    ("/" + "a" * 5000, 404), ("/files.json", 200), ("/index.html", 200),
])
def test_the_web_server_answers_bad_paths_with_400_or_404(web: tuple[str, int, object], path: str,
                                                          expected: int, capfd: pytest.CaptureFixture[str]) -> None:
    host, port, _ = web
    assert _status(host, port, path) == expected
    assert _status(host, port, "/files.json") == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err


def test_the_web_server_closes_idle_connections(web: tuple[str, int, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a connection that sent nothing held its thread for ever."""
    host, port, serve = web
    assert serve.Handler.timeout is not None and 0 < serve.Handler.timeout <= 30  # as shipped
    monkeypatch.setattr(serve.Handler, "timeout", 0.5)  # the same, quicker
    before = threading.active_count()
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(5)]
    time.sleep(0.2)
    assert threading.active_count() >= before + 5  # a thread each while they are open
    try:
        for conn in idle:
            assert conn.recv(1) == b""  # closed by the server after its idle timeout
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/files.json")
    assert connection.getresponse().status == 200

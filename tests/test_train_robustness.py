"""Bad input and faults around training and scoring: a bad file is skipped and counted, a run
folder is never taken over silently and holds one training at a time, unwritable outputs fail
before the corpus is parsed, Ctrl-C and --resume say what they do."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime.errors import MpxError, OptionsError

from clitools import BAD_KEY, midi_bytes, mpx, one_line_error
from conftest import ARTIFACTS, MIDI_DIR, run_cli

pytest.importorskip("torch", reason="training needs torch")


@pytest.fixture(scope="module")
def onnx_model() -> Path:
    return ARTIFACTS / "music_producter.onnx"


def test_a_bad_file_is_skipped_and_counted_by_the_corpus(tmp_path: Path) -> None:
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    for f in sorted(MIDI_DIR.glob("*.mid"))[:3]:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "badkey.mid").write_bytes(midi_bytes(BAD_KEY))
    corpus = load_corpus([tmp_path], cache=NoteCache(tmp_path / "cache"), workers=1)
    assert len(corpus.files) == 3
    assert [Path(f).name for f, _ in corpus.skipped] == ["badkey.mid"]
    assert "key" in corpus.skipped[0][1]


def test_eval_on_files_too_short_to_score_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  tiny_checkpoint: Path) -> None:
    from mpx.runtime.midi import write_midi
    data = tmp_path / "short"
    data.mkdir()
    for i in range(3):  # 10 notes each: window mode (seq_len 25) has nothing to score
        write_midi(np.array([[60 + j, 0.25, 0.2, 80] for j in range(10)], np.float32), data / f"s{i}.mid",
                   tempo=100 + i)
    code, out, err = mpx(capsys, "eval", str(tiny_checkpoint), str(data), "--split", "all", "--mode", "window")
    one_line_error(code, err, "long enough to score")
    assert out == ""  # no table of zeros


def test_train_into_an_earlier_run_needs_resume_or_force(tmp_path: Path) -> None:
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.loop import train
    from mpx.train.options import TrainOptions
    from conftest import TINY_MODEL
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1, max_files=4)
    options = TrainOptions(model=TINY_MODEL, epochs=1, batch_size=8, seq_len=64, seed=0)
    first = train(corpus, tmp_path / "run", options)
    before = {p.name: p.read_bytes() for p in (first.best, first.last)}
    with pytest.raises(MpxError, match="already holds a training run .*--resume.*--force"):
        train(corpus, tmp_path / "run", options)
    assert {p.name: p.read_bytes() for p in (first.best, first.last)} == before
    with pytest.raises(OptionsError, match="choose one"):
        train(corpus, tmp_path / "run", options, resume=True, force=True)
    again = train(corpus, tmp_path / "run", TrainOptions(model=TINY_MODEL, epochs=1, batch_size=8, seq_len=64, seed=3),
                  force=True)
    assert again.last.read_bytes() != before["last.safetensors"]


def test_a_refused_force_run_keeps_the_old_checkpoints(tmp_path: Path) -> None:
    # --force removes the previous run only when the new one starts to train
    from mpx.train import rundir
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(b"old best")
    with rundir.claim(run, force=True) as claimed:
        assert (run / "best.safetensors").exists()
        claimed.begin()
        assert not (run / "best.safetensors").exists()


def test_two_trainings_cannot_share_an_out_folder(tmp_path: Path) -> None:
    from mpx.train import rundir
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mpx.train import rundir\n"
         "with rundir.claim(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(MpxError, match=f"another mpx train \\(pid {holder.pid}\\) is writing"):
            with rundir.claim(tmp_path / "run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with rundir.claim(tmp_path / "run"):  # kill -9 released the lock
        pass


def test_read_only_outputs_fail_before_the_work(read_only: Path, seed: Path, onnx_model: Path,
                                                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.train import corpus
    monkeypatch.setattr(corpus, "load_corpus", lambda *a, **k: pytest.fail("corpus parsed first"))
    for args in (["run", str(seed), "--model", str(onnx_model), "--out", str(read_only / "x.mid")],
                 ["notes", str(seed), "--out", str(read_only / "x.csv")],
                 ["train", str(MIDI_DIR), "--out", str(read_only / "run")],
                 ["train", str(MIDI_DIR), "--out", str(seed)]):
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, str(read_only) if "seed.mid" not in args[-1] else "not a directory")


@pytest.mark.slow
def test_ctrl_c_while_parsing_the_corpus_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(30):  # distinct contents: nothing is in the cache
        for f in MIDI_DIR.glob("*.mid"):
            (data / f"{i}-{f.name}").write_bytes(f.read_bytes() + bytes([i]))
    env = {**os.environ, "MPX_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-m", "mpx", "train", str(data), "--out", str(tmp_path / "run"),
                                "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True,
                               # as on a terminal: a CI job run in the background inherits SIGINT ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cache = tmp_path / "cache"
    deadline = time.monotonic() + 120
    while not (cache.exists() and any(p.is_file() for p in cache.rglob("*"))) and time.monotonic() < deadline:
        time.sleep(0.05)  # parsing has begun
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole group
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, f"exit {process.returncode}; stderr {err!r}; stdout {out[-500:]!r}"
    assert err.strip() == "mpx: interrupted"


@pytest.mark.slow
def test_resume_names_the_flags_it_ignores(tmp_path: Path) -> None:
    env = {"MPX_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("train", str(MIDI_DIR), "--out", str(tmp_path / "run"), "--epochs", "1", "--hidden", "16",
                    "--embedding", "4", "--batch-size", "8", "--max-files", "4", env=env)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", str(MIDI_DIR), "--out", str(tmp_path / "run"), "--epochs", "1", "--hidden", "64",
                    "--lr", "0.01", "--batch-size", "8", "--max-files", "4", "--resume", env=env)
    assert again.returncode == 0, again.stderr
    assert "--resume continues the saved run with its own options; ignoring" in again.stderr
    assert "--hidden 64 (the run's own: 16)" in again.stderr and "--lr 0.01 (the run's own: 0.003)" in again.stderr
    assert "--batch-size" not in again.stderr  # given, but the same as the run's


@pytest.mark.parametrize("args, message", [
    (["--workers", "-1"], "--workers must be an integer 1..256"),
    (["--pitch-weight", "nan"], "--pitch-weight must be a number"),
    (["--lr", "-1"], "--lr must be a number"),
    (["--epochs", "0"], "--epochs must be an integer"),
])


def test_training_options_out_of_bounds_are_one_line(args: list[str], message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, err = mpx(capsys, "train", str(MIDI_DIR), "--out", str(tmp_path / "run"), *args)
    one_line_error(code, err, message)
    assert time.monotonic() - started < 30  # refused, not attempted
    assert list(tmp_path.iterdir()) == []

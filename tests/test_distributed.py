"""Distributed training: lanes sharded over ranks, DDP, rank-0 checkpoints, resume, failures.

The multi-process tests run 2 gloo ranks on this machine (marked slow); the rest checks the
pieces and the one-line errors without starting ranks.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mpx.runtime.config import ModelConfig
from mpx.runtime.errors import OptionsError
from mpx.train import checkpoint
from mpx.train.cache import NoteCache
from mpx.train.corpus import load_corpus
from mpx.train.distributed import LaunchOptions, World, first_cause, share, without_flag
from mpx.train.loop import Interrupted, Trainer, train
from mpx.train.rundir import LAST
from mpx.train.options import TrainOptions

from conftest import MIDI_DIR, run_cli

SMALL = dict(model=ModelConfig(hidden=16, embedding=4), batch_size=4, seq_len=32, seed=3)
SMALL_FLAGS = ["--hidden", "16", "--embedding", "4", "--batch-size", "4", "--seq-len", "32", "--seed", "3"]


def test_ranks_share_the_lanes_and_the_validation_files() -> None:
    worlds = [World(rank=r, size=3) for r in range(3)]
    lanes = [w.lanes(8) for w in worlds]
    assert sorted(np.concatenate(lanes).tolist()) == list(range(8))
    lengths = [900, 100, 500, 400, 300, 50]
    shares = [share(lengths, w) for w in worlds]
    assert sorted(sum(shares, [])) == list(range(6))
    loads = [sum(lengths[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= 400  # longest first onto the least loaded rank
    assert share(lengths, World()) == list(range(6))


def test_nproc_flag_is_checked_and_removed_from_the_ranks_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, -1, 2000, 1.5, True):
        with pytest.raises(OptionsError, match="nproc must be an integer 1..1024"):
            LaunchOptions(bad)  # type: ignore[arg-type]
    assert without_flag(["train", "d", "--nproc", "2", "--out", "o", "--nproc=3"], "--nproc") == ["train", "d", "--out", "o"]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(OptionsError, match="under torchrun, leave it out"):
        LaunchOptions(2)


@pytest.mark.parametrize("flags, message", [
    (["--nproc", "0"], "--nproc must be an integer 1..1024"),
    (["--device", "cuda"], "--device cuda: torch sees no CUDA device here (use --device cpu)"),
    (["--nproc", "2", "--device", "cuda"], "--nproc 2 with --device cuda needs 2 GPUs"),
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device"),
])
def test_bad_launch_flags_are_one_line_before_any_parsing(tmp_path: Path, flags: list[str], message: str) -> None:
    if torch.cuda.is_available() and "cuda" in " ".join(flags):
        pytest.skip("this machine has CUDA: the flag is valid here")
    cache = tmp_path / "cache"
    result = run_cli("train", str(MIDI_DIR), "--out", str(tmp_path / "run"), *flags,
                     env={"MPX_CACHE_DIR": str(cache)})
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not cache.exists() and not (tmp_path / "run").exists()  # nothing parsed, nothing written


# -- two ranks ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_ranks_validate_like_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1)
    one = train(corpus, tmp_path / "one", TrainOptions(epochs=1, device="cpu", **SMALL))
    result = run_cli("train", str(MIDI_DIR), "--nproc", "2", "--epochs", "1", "--device", "cpu", *SMALL_FLAGS,
                     "--out", str(tmp_path / "two"), env={"MPX_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch   1:") == 1  # rank 0 speaks for both
    two = checkpoint.load(tmp_path / "two" / LAST)
    assert two.progress["world_size"] == 2
    assert abs(two.progress["history"][0]["val_loss"] - one.history[0]["val_loss"]) < 1e-4
    reference = checkpoint.load(one.last).state_dict
    assert max(float((two.state_dict[k] - reference[k]).abs().max()) for k in reference) < 1e-4
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.safetensors", "last.safetensors"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str, cache: str, stop_at: int | None, resume: bool) -> None:
    """One rank, as torchrun would start it (its environment), training in this process."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(cache), workers=1)
    options = TrainOptions(epochs=2, transpose=4, device="cpu",
                           **{**SMALL, "model": ModelConfig(hidden=16, embedding=4, dropout=0.2)})
    if stop_at is None:
        train(corpus, out, options, resume=resume)
        return
    from mpx.train import distributed
    world = distributed.start(torch.device("cpu"))
    stop = {"stop": False}

    def on_step(done: int, total: int, loss: float) -> None:
        if rank == 1 and done == stop_at:
            stop["stop"] = True  # one rank's Ctrl-C: both stop at the same batch

    try:
        with pytest.raises(Interrupted):
            Trainer(corpus, out, options, stop=stop, on_step=on_step, world=world).run()
    finally:
        distributed.stop(world)


def _two_ranks(out: Path, cache: Path, stop_at: int | None = None, resume: bool = False) -> None:
    import torch.multiprocessing as mp
    mp.spawn(_rank, args=(_free_port(), str(out), str(cache), stop_at, resume), nprocs=2, join=True)


@pytest.mark.slow
def test_resume_with_the_same_ranks_reaches_the_uninterrupted_weights(tmp_path: Path) -> None:
    # dropout and transposition draw random numbers on each rank: resuming continues all streams
    _two_ranks(tmp_path / "straight", tmp_path / "cache")
    _two_ranks(tmp_path / "resumed", tmp_path / "cache", stop_at=5)
    saved = checkpoint.load(tmp_path / "resumed" / LAST)
    assert (saved.progress["epoch"], saved.progress["step"]) == (0, 5)
    assert {"rng.torch", "rng.torch.1"} <= set(saved.extra)
    _two_ranks(tmp_path / "resumed", tmp_path / "cache", resume=True)
    w1, w2 = checkpoint.load(tmp_path / "straight" / LAST), checkpoint.load(tmp_path / "resumed" / LAST)
    assert all(torch.equal(w1.state_dict[k], w2.state_dict[k]) for k in w1.state_dict)
    assert [r["val_loss"] for r in w1.progress["history"]] == [r["val_loss"] for r in w2.progress["history"]]


def _worker_pids(out: Path) -> list[int]:
    """The ranks of the torchrun training into `out` (their command line names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-u" in args and str(out).encode() in args:
            pids.append(int(entry.name))
    return sorted(pids)


@pytest.mark.slow
def test_the_rank_killed_by_a_signal_is_named_not_the_peer_that_lost_contact() -> None:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure
    def failure(rank: int, exitcode: int, timestamp: int) -> ProcessFailure:
        made = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file="")
        made.timestamp = timestamp
        return made
    # rank 0 exits 1 (lost contact) in the same whole second as rank 1's SIGKILL: CI saw rank 0 named
    same_second = {0: failure(0, 1, 50), 1: failure(1, -signal.SIGKILL, 50)}
    assert first_cause(same_second)[0] == 1
    assert first_cause({0: failure(0, 1, 49), 1: failure(1, 1, 50)})[0] == 0
    assert first_cause({0: failure(0, 1, 50), 1: failure(1, 1, 50)})[0] == 0


def test_a_rank_that_dies_is_reported_and_the_last_checkpoint_stays_intact(tmp_path: Path) -> None:
    import subprocess
    import sys
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mpx", "train", str(MIDI_DIR), "--nproc", "2", "--epochs", "200",
               "--device", "cpu", *SMALL_FLAGS, "--hidden", "64", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MPX_CACHE_DIR": str(tmp_path / "cache")})
    try:
        deadline = time.monotonic() + 300
        while not (out / LAST).is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / LAST).is_file(), proc.stderr.read() if proc.stderr else ""
        time.sleep(0.5)
        ranks = _worker_pids(out)
        assert len(ranks) == 2
        os.kill(ranks[-1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "rank 1 of 2 failed (killed by SIGKILL)" in stderr
    assert f"{out / LAST} keeps the last saved state" in stderr and "Traceback" not in stderr
    saved = checkpoint.load(out / LAST)  # whole: written atomically by rank 0
    resumed = run_cli("train", str(MIDI_DIR), "--nproc", "2", "--resume", "--epochs",
                      str(saved.progress["epoch"] + 1), "--device", "cpu", "--out", str(out),
                      env={"MPX_CACHE_DIR": str(tmp_path / "cache")})
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(out / LAST).progress["epoch"] == saved.progress["epoch"] + 1

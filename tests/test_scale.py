"""At scale: `mpx eval` parses only the split it scores and stays quiet off a terminal; the
GPU path (runs where CUDA is, says why it is skipped where not); windows and progress."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mpx.runtime.config import ModelConfig
from mpx.train import checkpoint
from mpx.train.cache import NoteCache
from mpx.train.corpus import load_corpus
from mpx.train.evaluate import auto_stride, evaluate_model, window_count, windows
from mpx.train.loop import train
from mpx.train.options import TrainOptions

from conftest import MIDI_DIR, run_cli
from test_corpus import maestro_folder


def entries(cache: Path) -> int:
    return len(list(cache.glob("??/*.notes")))


def test_eval_parses_only_the_split_it_scores_and_is_quiet_off_a_terminal(
        tmp_path: Path, midi_files: list[Path], tiny_checkpoint: Path) -> None:
    root = maestro_folder(tmp_path / "maestro", midi_files)  # 3 train, 1 validation, 2 test files
    cache = tmp_path / "cache"
    result = run_cli("eval", str(tiny_checkpoint), str(root), "--split", "test", "--json",
                     "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bars when stderr is not a terminal
    report = json.loads(result.stdout)
    assert report["files"] == 2 and entries(cache) == 2  # the two test files, nothing else parsed
    assert report["window"]["stride"] == auto_stride(report["seq_len"])
    again = run_cli("eval", str(tiny_checkpoint), str(root), "--split", "val", "--mode", "stateful",
                    "--stride", "1", "--cache-dir", str(cache))
    assert again.returncode == 0, again.stderr
    assert entries(cache) == 3 and "stateful" in again.stdout


def test_window_counts_and_strides_agree(tiny_checkpoint: Path) -> None:
    from mpx.train.eager import open_checkpoint
    backend = open_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(0)
    notes = [np.abs(rng.normal(size=(n, 4))).astype(np.float32) + [60, 0, 0, 64] for n in (10, 30, 57, 100)]
    width = backend.spec.seq_len
    for stride in (1, 3, 7):
        counted = sum(len(x) for x, _ in windows(notes, width, 16, stride))
        assert counted == window_count(notes, width, stride)
    seen = []
    report = evaluate_model(backend, notes, modes=("window",), stride=3,
                            on_progress=lambda mode, done, total: seen.append((mode, done, total)))
    assert report["window"]["predictions"] == window_count(notes, width, 3) == seen[-1][1] == seen[-1][2]
    assert report["window"]["stride"] == 3


def test_progress_bars_are_quiet_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from mpx.progress import bars
    with bars() as progress:
        progress.callback("parse MIDI")(1, 2)
        progress.update("window", 5, 10)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device here: the GPU path (--device cuda, bf16/fp16 autocast) is tested where torch sees one")
def test_training_on_a_gpu_with_autocast_gives_a_checkpoint_that_loads_on_a_cpu(tmp_path: Path) -> None:
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1)
    result = train(corpus, tmp_path / "gpu", TrainOptions(model=ModelConfig(hidden=32, embedding=8), epochs=1,
                                                          batch_size=8, seq_len=64, device="cuda", precision="auto"))
    assert np.isfinite(result.history[0]["val_loss"])
    saved = checkpoint.load(result.last)
    assert saved.progress["precision"]["name"] in ("bf16", "fp16")
    model, _ = checkpoint.load_model(result.best)  # weights are float32 on the CPU
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    resumed = train(corpus, tmp_path / "gpu", TrainOptions(epochs=2, device="cuda"), resume=True)
    assert len(resumed.history) == 2


def test_corpus_shared_between_processes_is_one_file(tmp_path: Path) -> None:
    """Ranks on one machine load the same corpus: one pack, mapped by each (not a copy each)."""
    cache = NoteCache(tmp_path / "cache")
    a = load_corpus([MIDI_DIR], cache=cache, workers=1)
    b = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1)
    assert isinstance(a.store, np.memmap) and isinstance(b.store, np.memmap)
    assert a.store.filename == b.store.filename
    assert len(list((tmp_path / "cache" / "packs").glob("*.notes"))) == 1
    shutil.rmtree(tmp_path / "cache")

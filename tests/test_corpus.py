"""Corpus: inputs, parallel parse, content-keyed cache, bad files skipped, split by piece."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime.errors import MpxError
from mpx.train.cache import NoteCache
from mpx.train.corpus import find_midi_files, load_corpus
from mpx.train.split import assign

from conftest import BAD_DIR, MIDI_DIR


def test_inputs_files_directories_and_glob_patterns(tmp_path: Path, midi_files: list[Path]) -> None:
    nested = tmp_path / "maestro-v2.0.0" / "2004"
    nested.mkdir(parents=True)
    for f in midi_files[:3]:
        shutil.copy(f, nested / (f.stem + ".midi"))
    pattern = str(tmp_path / "maestro-v2.0.0" / "*" / "*.midi")  # the tutorial's layout
    assert len(find_midi_files([pattern])) == 3
    assert len(find_midi_files([tmp_path])) == 3  # recursive
    both = find_midi_files([midi_files[0], MIDI_DIR])  # duplicates collapse
    assert len(both) == len(midi_files)
    with pytest.raises(MpxError, match="no such file"):
        find_midi_files([tmp_path / "missing"])
    with pytest.raises(MpxError, match="matches no files"):
        find_midi_files([str(tmp_path / "*.nothing")])


def test_second_load_parses_nothing_and_gives_the_same_arrays(tmp_path: Path) -> None:
    cache = NoteCache(tmp_path / "cache")
    first = load_corpus([MIDI_DIR, BAD_DIR], cache=cache, workers=2)
    second = load_corpus([MIDI_DIR, BAD_DIR], cache=cache, workers=2)
    assert first.parsed == len(first.files) + len(first.skipped) > 0
    assert second.parsed == 0
    assert [str(f) for f in first.files] == [str(f) for f in second.files]
    for a, b in zip(first.notes, second.notes):
        np.testing.assert_array_equal(a, b)
    assert second.skipped == first.skipped


def test_bad_files_are_skipped_with_a_warning_each_and_a_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = load_corpus([MIDI_DIR, BAD_DIR], cache=NoteCache(tmp_path), workers=1)
    bad = sorted(BAD_DIR.rglob("*.mid"))
    # every bad file but the one pretty_midi can read is skipped and named
    assert len(corpus.skipped) == len(bad) - 1
    for path, reason in corpus.skipped:
        assert path in caplog.text and reason
    assert f"skipped {len(bad) - 1} of" in caplog.text
    assert corpus.summary()["skipped"] == len(bad) - 1


def test_only_bad_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MpxError, match="none of the"):
        load_corpus([BAD_DIR / "synthetic_derived"], cache=NoteCache(tmp_path), workers=1)


def test_max_files_limits_the_corpus(tmp_path: Path) -> None:
    corpus = load_corpus([MIDI_DIR], max_files=2, cache=NoteCache(tmp_path), workers=1)
    assert len(corpus.files) == 2


def test_split_keeps_every_piece_on_one_side(tmp_path: Path, midi_files: list[Path]) -> None:
    # Two performances of one piece, plus a copy of a file under another name.
    root = tmp_path / "asap-like"
    root.mkdir()
    rows = ["composer,title,midi_performance"]
    for i, f in enumerate(midi_files):
        shutil.copy(f, root / f"perf{i}.mid")
        piece = "PieceA" if i < 2 else f"Piece{i}"
        rows.append(f"Comp,{piece},perf{i}.mid")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    corpus = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1)
    side = dict(zip([f.name for f in corpus.files], corpus.splits))
    assert side["perf0.mid"] == side["perf1.mid"]
    assert corpus.groups[0] == corpus.groups[1] == "Comp/PieceA"
    assert "val" in corpus.splits and "train" in corpus.splits


def test_same_content_lands_on_one_side_without_metadata(tmp_path: Path, midi_files: list[Path]) -> None:
    for i in range(40):
        shutil.copy(midi_files[i % len(midi_files)], tmp_path / f"copy{i}.mid")
    corpus = load_corpus([tmp_path], cache=NoteCache(tmp_path / "c"), workers=1)
    by_key: dict[str, set[str]] = {}
    for key, split in zip(corpus.keys, corpus.splits):
        by_key.setdefault(key, set()).add(split)
    assert all(len(sides) == 1 for sides in by_key.values())


def test_assign_is_stable_and_never_empty_on_the_validation_side() -> None:
    groups = [f"piece{i}" for i in range(200)]
    sides = assign(groups)
    assert sides == assign(list(groups))
    assert 10 <= sides.count("val") <= 35 and 10 <= sides.count("test") <= 35
    assert assign(["a", "b"]).count("val") == 1  # tiny corpus: one group moves to validation
    # adding groups never moves an existing one
    assert assign(groups + ["new1", "new2"])[:200] == sides
    with pytest.raises(MpxError):
        assign(groups, val=0.6, test=0.6)

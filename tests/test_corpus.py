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


# -- MAESTRO's layout -------------------------------------------------------------------------
MAESTRO_COLUMNS = "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration"
# The six test files are MAESTRO performances; here they play a small MAESTRO folder.
MAESTRO_SIDES = ["train", "train", "train", "validation", "test", "test"]


def maestro_folder(root: Path, midi_files: list[Path], sides: list[str] = MAESTRO_SIDES,
                   columns: str = MAESTRO_COLUMNS, missing: int = 0) -> Path:
    """A MAESTRO-shaped folder: year folders of .midi files and maestro-v3.0.0.csv naming them
    (the first two performances are of one piece), plus `missing` rows naming absent files."""
    rows = [columns]
    for i, (path, side) in enumerate(zip(midi_files, sides)):
        year = 2004 + 2 * (i % 3)
        (root / str(year)).mkdir(parents=True, exist_ok=True)
        name = f"{year}/{path.stem}.midi"
        shutil.copy(path, root / name)
        piece = "Sonata in A" if i < 2 else f"Piece {i}"
        values = {"canonical_composer": "Composer", "canonical_title": piece, "split": side,
                  "year": str(year), "midi_filename": name, "audio_filename": name[:-5] + ".wav",
                  "duration": "60.0"}
        rows.append(",".join(f'"{values[c]}"' for c in columns.split(",")))
    for i in range(missing):
        values = {"canonical_composer": "Gone", "canonical_title": f"Lost {i}", "split": "train",
                  "year": "2018", "midi_filename": f"2018/missing-{i}.midi", "audio_filename": "x.wav",
                  "duration": "1"}
        rows.append(",".join(f'"{values[c]}"' for c in columns.split(",")))
    (root / "maestro-v3.0.0.csv").write_text("\n".join(rows) + "\n")
    return root


def sides_by_stem(corpus) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f.stem: s for f, s in zip(corpus.files, corpus.splits)}


def test_maestro_csv_gives_the_official_split_and_the_piece(tmp_path: Path, midi_files: list[Path]) -> None:
    root = maestro_folder(tmp_path / "maestro-v3.0.0", midi_files)
    corpus = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1)
    expected = {f.stem: {"validation": "val"}.get(s, s) for f, s in zip(midi_files, MAESTRO_SIDES)}
    assert sides_by_stem(corpus) == expected
    assert corpus.groups[corpus.files.index(next(f for f in corpus.files if f.stem == midi_files[0].stem))] \
        == "Composer/Sonata in A"
    # the tutorial's glob finds the CSV at the fixed part of the pattern
    globbed = load_corpus([str(root / "*" / "*.midi")], cache=NoteCache(tmp_path / "c"), workers=1)
    assert sides_by_stem(globbed) == expected


@pytest.mark.parametrize("shape", ["rows", "columns"])
def test_maestro_json_in_both_of_its_shapes(tmp_path: Path, midi_files: list[Path], shape: str) -> None:
    import csv
    import json
    root = maestro_folder(tmp_path / "m", midi_files)
    with open(root / "maestro-v3.0.0.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    (root / "maestro-v3.0.0.csv").unlink()
    data = rows if shape == "rows" else {c: {str(i): r[c] for i, r in enumerate(rows)} for c in rows[0]}
    (root / "maestro-v2.0.0.json").write_text(json.dumps(data))
    corpus = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1)
    assert sorted(corpus.splits) == ["test", "test", "train", "train", "train", "val"]


def test_maestro_csv_naming_missing_files_skips_counts_and_says_so(
        tmp_path: Path, midi_files: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    root = maestro_folder(tmp_path / "m", midi_files, missing=3)
    corpus = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1)
    assert len(corpus.files) == len(midi_files)
    lines = [r.getMessage() for r in caplog.records if "not there" in r.getMessage()]
    assert lines == ["maestro-v3.0.0.csv names 3 files that are not there (first: 2018/missing-0.midi): left out"]


def test_maestro_csv_without_a_split_column_splits_by_piece_and_says_so(
        tmp_path: Path, midi_files: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    columns = MAESTRO_COLUMNS.replace("split,", "")
    root = maestro_folder(tmp_path / "m", midi_files, columns=columns)
    corpus = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1)
    assert "has no split column: splitting by piece" in caplog.text
    side = sides_by_stem(corpus)
    assert side[midi_files[0].stem] == side[midi_files[1].stem]  # one piece, one side


def test_maestro_csv_with_a_foreign_split_name_is_one_clear_error(tmp_path: Path, midi_files: list[Path]) -> None:
    root = maestro_folder(tmp_path / "m", midi_files, sides=["train", "dev", "test", "test", "test", "test"])
    with pytest.raises(MpxError, match=r"maestro-v3.0.0.csv: row 3: split 'dev' is not one of train, validation, test"):
        load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1)


def test_only_the_asked_splits_are_parsed(tmp_path: Path, midi_files: list[Path]) -> None:
    root = maestro_folder(tmp_path / "m", midi_files)
    test_side = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1, splits=("test",))
    assert test_side.parsed == 2 and set(test_side.splits) == {"test"}
    training = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1, splits=("train", "val"))
    assert training.parsed == 4 and set(training.splits) == {"train", "val"}
    summary = training.summary()["splits"]
    assert summary["test"] == {"files": 2, "notes": None, "groups": 2}  # known, not parsed
    # a split by content hash needs the bytes only: nothing of the other sides is parsed either
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in midi_files:
        shutil.copy(f, plain / f.name)
    everything = load_corpus([plain], cache=NoteCache(tmp_path / "c2"), workers=1)
    val_only = load_corpus([plain], cache=NoteCache(tmp_path / "c3"), workers=1, splits=("val",))
    assert val_only.parsed == everything.splits.count("val") == len(val_only.files)


# -- small corpora ----------------------------------------------------------------------------
def test_one_file_validates_on_the_last_tenth_of_its_notes(tmp_path: Path, midi_files: list[Path],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    corpus = load_corpus([midi_files[0]], cache=NoteCache(tmp_path), workers=1, splits=("train", "val"))
    assert corpus.holdout == "tail"
    assert "validation: the last 10% of the notes of each of the 1 files" in caplog.text
    n = int(corpus.lengths[0])
    train, val = corpus.select("train"), corpus.select("val")
    tail = int(np.ceil(0.1 * (n - 1)))
    assert int(train.lengths[0]) - 1 == n - 1 - tail and int(val.lengths[0]) - 1 == tail
    # the targets (every note but a piece's first) of the two sides never overlap, and cover the file
    train_targets = set(range(int(train.starts[0]) + 1, int(train.starts[0] + train.lengths[0])))
    val_targets = set(range(int(val.starts[0]) + 1, int(val.starts[0] + val.lengths[0])))
    assert not train_targets & val_targets and len(train_targets | val_targets) == n - 1
    np.testing.assert_array_equal(corpus.select("all").notes[0], corpus.notes[0])
    assert not corpus.select("test").files


# -- the cache can't lie ----------------------------------------------------------------------
def _entry(cache: NoteCache, path: Path) -> Path:
    from mpx.train.cache import content_key
    return cache._path(content_key(path.read_bytes()))


def _rewrite(entry: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Re-write a well-formed entry (a valid checksum) whose header or notes `change` alters."""
    from mpx.train import notefile
    header, notes = notefile.read(entry)
    header, notes = change(dict(header), notes.copy())
    body = np.ascontiguousarray(notes, notefile.DTYPE)
    header["sha256"] = notefile.digest(body)
    entry.write_bytes(notefile.encode_header(header) + body.tobytes())


def _negative_step(h, n):  # type: ignore[no-untyped-def]
    n[3, 1] = -0.5
    return h, n


def _nan(h, n):  # type: ignore[no-untyped-def]
    n[2, 2] = np.nan
    return h, n


def _pitch(h, n):  # type: ignore[no-untyped-def]
    n[1, 0] = 200
    return h, n


def _velocity(h, n):  # type: ignore[no-untyped-def]
    n[1, 3] = 0
    return h, n


def _codec(h, n):  # type: ignore[no-untyped-def]
    return {**h, "codec": "notes-v1"}, n


def _parser(h, n):  # type: ignore[no-untyped-def]
    return {**h, "parser": "pretty_midi 0.0.1, mido 0.0.1"}, n


def _shape(h, n):  # type: ignore[no-untyped-def]
    return h, n.reshape(-1)[:-4].reshape(-1, 4)  # one note fewer than the file has


def _first_step(h, n):  # type: ignore[no-untyped-def]
    n[0, 1] = 0.25
    return h, n


CORRUPTIONS = {
    "zero bytes": lambda e: e.write_bytes(b""),
    "cut short": lambda e: e.write_bytes(e.read_bytes()[:-10]),
    "header only": lambda e: e.write_bytes(e.read_bytes()[:64]),
    "flipped byte": lambda e: e.write_bytes(e.read_bytes()[:-7] + bytes([e.read_bytes()[-7] ^ 0x40]) + e.read_bytes()[-6:]),
    "bad magic": lambda e: e.write_bytes(b"NOTNOTES" + e.read_bytes()[8:]),
    "header not JSON": lambda e: e.write_bytes(e.read_bytes()[:12] + b"[" + e.read_bytes()[13:]),
    "not an npy": lambda e: e.write_bytes(b"\x93NUMPY" + b"\0" * 200),
    "negative step": lambda e: _rewrite(e, _negative_step),
    "NaN duration": lambda e: _rewrite(e, _nan),
    "pitch 200": lambda e: _rewrite(e, _pitch),
    "velocity 0": lambda e: _rewrite(e, _velocity),
    "other codec": lambda e: _rewrite(e, _codec),
    "other parser": lambda e: _rewrite(e, _parser),
    "wrong length": lambda e: _rewrite(e, _shape),
    "first step not 0": lambda e: _rewrite(e, _first_step),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_damaged_cache_entry_is_parsed_again(tmp_path: Path, midi_files: list[Path], corruption: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    source = midi_files[0]
    cache = NoteCache(tmp_path / "c")
    first = load_corpus([source], cache=cache, workers=1)
    shutil.rmtree(cache.dir / "packs")  # the pack alone would serve the next load
    CORRUPTIONS[corruption](_entry(cache, source))
    again = NoteCache(tmp_path / "c")
    second = load_corpus([source], cache=again, workers=1)
    assert second.parsed == 1 and again.damaged == 1
    assert "1 damaged or outdated entries; parsed those files again" in caplog.text
    np.testing.assert_array_equal(second.notes[0], first.notes[0])
    third = NoteCache(tmp_path / "c")
    shutil.rmtree(cache.dir / "packs")
    assert load_corpus([source], cache=third, workers=1).parsed == 0 and third.damaged == 0  # repaired


def test_a_damaged_error_entry_is_parsed_again(tmp_path: Path) -> None:
    bad = BAD_DIR / "synthetic_derived" / "not_midi.mid"
    cache = NoteCache(tmp_path / "c")
    load_corpus([bad, MIDI_DIR], cache=cache, workers=1)
    shutil.rmtree(cache.dir / "packs")
    _entry(cache, bad).write_bytes(b"")
    again = NoteCache(tmp_path / "c")
    corpus = load_corpus([bad, MIDI_DIR], cache=again, workers=1)
    assert again.damaged == 1 and corpus.parsed == 1 and corpus.skipped[0][0] == str(bad)


def test_the_corpus_is_a_memory_mapped_pack_that_alone_serves_a_warm_load(tmp_path: Path) -> None:
    cache = NoteCache(tmp_path / "c")
    first = load_corpus([MIDI_DIR], cache=cache, workers=1)
    assert isinstance(first.store, np.memmap) and first.note_count == len(first.store)
    for entry in cache.dir.glob("??/*.notes"):
        entry.unlink()  # a warm start reads no entry at all
    second = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "c"), workers=1)
    assert second.parsed == 0
    np.testing.assert_array_equal(np.asarray(second.store), np.asarray(first.store))


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "zero bytes"])
def test_a_damaged_pack_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = NoteCache(tmp_path / "c")
    first = np.array(load_corpus([MIDI_DIR], cache=cache, workers=1).store)  # a copy: the map is damaged next
    pack = next((cache.dir / "packs").glob("*.notes"))
    CORRUPTIONS[damage](pack)
    second = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "c"), workers=1)
    assert "is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert second.parsed == 0  # rebuilt from the entries, nothing parsed
    np.testing.assert_array_equal(np.asarray(second.store), first)


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # nothing can be created below it, even by root
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(blocker / "cache"), workers=1)
    again = load_corpus([MIDI_DIR], cache=NoteCache(blocker / "cache"), workers=1)
    assert corpus.parsed == again.parsed == len(corpus.files) + len(corpus.skipped)
    assert not isinstance(corpus.store, np.memmap)  # held in memory instead
    np.testing.assert_array_equal(corpus.store, again.store)


def test_a_validation_side_alone_is_not_a_small_corpus(tmp_path: Path, midi_files: list[Path]) -> None:
    root = maestro_folder(tmp_path / "m", midi_files)
    val = load_corpus([root], cache=NoteCache(tmp_path / "c"), workers=1, splits=("val",))
    assert val.holdout == "split" and val.splits == ["val"] and val.parsed == 1
    np.testing.assert_array_equal(val.select("val").notes[0], val.notes[0])  # the whole file


def test_processes_loading_one_corpus_parse_it_once(tmp_path: Path) -> None:
    """The ranks of a run start together: one parses and packs, the others wait and open it."""
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(2) as pool:
        runs = list(pool.map(_load_parsed, [str(tmp_path / "c")] * 2))
    assert sorted(runs) == [0, len(list(MIDI_DIR.glob("*.mid")))]


def _load_parsed(cache: str) -> int:
    return load_corpus([MIDI_DIR], cache=NoteCache(cache), workers=1).parsed

"""Property-based fuzzing of everything a user hands mpx: MIDI bytes, CSV text, specs, option
values, seeds. The property is always the same: a valid result, or one MpxError of the kind
the boundary promises, with a one-line message naming the input; never another exception.

Bounded for CI (derandomized, a fixed number of examples, about a minute in all); set
MPX_FUZZ_SCALE=10 for a longer hunt. benchmarks/reliability.py runs the CLI-level audit.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpx.runtime import GenerationOptions, load
from mpx.runtime.errors import MidiError, MpxError, OptionsError, SpecError
from mpx.runtime.midi import read_notes
from mpx.runtime.notes_csv import read_csv
from mpx.runtime.run import generate_files
from mpx.runtime.spec import SPEC_VERSION, ModelSpec

from conftest import MIDI_DIR

SCALE = float(os.environ.get("MPX_FUZZ_SCALE", "1"))


def bounded(examples: int):  # type: ignore[no-untyped-def]
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


GOOD = [p.read_bytes() for p in sorted(MIDI_DIR.glob("*.mid"))]


def check_notes(notes: np.ndarray) -> None:
    """What every successfully read note must be (nothing out of range slips through)."""
    assert notes.dtype == np.float32 and notes.ndim == 2 and notes.shape[1] == 4 and len(notes) > 0
    assert np.isfinite(notes).all()
    assert ((notes[:, 0] >= 0) & (notes[:, 0] <= 127) & (notes[:, 0] == np.round(notes[:, 0]))).all()
    assert (notes[:, 1:3] >= 0).all()
    assert ((notes[:, 3] >= 0) & (notes[:, 3] <= 127)).all()


def check_clean(exc: MpxError, name: str) -> None:
    message = str(exc)
    assert message.startswith(f"{name}:") and "\n" not in message, message


# -- MIDI bytes -------------------------------------------------------------------------------
mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "length"]),
                     st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8))


def mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, payload in mutations:
        if not out:
            break
        i = int(where * len(out))
        if kind == "flip":
            out[i] ^= 1 << (payload[0] % 8)
        elif kind == "set":
            out[i:i + len(payload)] = payload
        elif kind == "insert":
            out[i:i] = payload
        elif kind == "delete":
            del out[i:i + len(payload)]
        elif kind == "truncate":
            del out[i:]
        else:  # a chunk length field: the MThd or an MTrk header's 4 bytes
            at = out.find(b"MTrk", i)
            at = at if at >= 0 else 0
            out[at + 4:at + 8] = (payload * 4)[:4]
    return bytes(out)


def reads_or_is_one_midi_error(data: bytes, name: str) -> None:
    """Either valid notes or one MidiError naming the file: nothing else may escape."""
    try:
        notes = read_notes(data, name=name)
    except MidiError as exc:
        check_clean(exc, name)
    else:
        check_notes(notes)


@bounded(150)
@given(base=st.sampled_from(range(len(GOOD))), mutations=st.lists(mutation, min_size=1, max_size=6))
def test_fuzzed_midi_reads_or_is_one_midi_error(base: int, mutations: list[tuple[str, float, bytes]]) -> None:
    reads_or_is_one_midi_error(mutate(GOOD[base], mutations), "fuzz.mid")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", len(body)) + body


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


event = st.one_of(
    # meta events of any type and content: key signature, tempo 0, time signature 0/0, text, ...
    st.tuples(st.integers(0, 5000), st.integers(0, 0x7F), st.binary(max_size=6)).map(
        lambda t: _vlq(t[0]) + b"\xff" + bytes([t[1]]) + _vlq(len(t[2])) + t[2]),
    # channel messages, running status included (a status byte may be missing)
    st.tuples(st.integers(0, 5000), st.integers(0x80, 0xEF), st.integers(0, 127), st.integers(0, 127)).map(
        lambda t: _vlq(t[0]) + bytes([t[1], t[2], t[3]])),
    st.tuples(st.integers(0, 500), st.integers(0, 127), st.integers(0, 127)).map(
        lambda t: _vlq(t[0]) + bytes([t[1], t[2]])),
    # system exclusive with a random body
    st.tuples(st.integers(0, 500), st.binary(max_size=6)).map(
        lambda t: _vlq(t[0]) + b"\xf0" + _vlq(len(t[1]) + 1) + t[1] + b"\xf7"),
    # raw garbage
    st.binary(min_size=1, max_size=4),
)


@bounded(150)
@given(division=st.integers(0, 0xFFFF), fmt=st.integers(0, 3),
       tracks=st.lists(st.lists(event, max_size=25), min_size=1, max_size=3),
       end_track=st.booleans())
def test_generated_midi_with_any_events_reads_or_is_one_midi_error(division: int, fmt: int,
                                                                   tracks: list[list[bytes]], end_track: bool) -> None:
    notes = b"".join(b"\x00\x90" + bytes([60 + i, 90]) + b"\x30\x80" + bytes([60 + i, 0]) for i in range(4))
    body = b"".join(_chunk(b"MTrk", b"".join(t) + notes + (b"\x00\xff\x2f\x00" if end_track else b""))
                    for t in tracks)
    data = _chunk(b"MThd", struct.pack(">HHH", fmt, len(tracks), division)) + body
    reads_or_is_one_midi_error(data, "made.mid")


# -- CSV text ---------------------------------------------------------------------------------
field = st.one_of(st.integers(-300, 300).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["", " ", "nan", "inf", "-0", "1e309", "0x10", "pitch", "60.0", "1,2"]),
                  st.text(max_size=4))
line = st.lists(field, min_size=0, max_size=6).map(",".join)


@bounded(150)
@given(lines=st.lists(line, max_size=12), header=st.booleans())
def test_fuzzed_csv_reads_or_is_one_midi_error(lines: list[str], header: bool,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("csv") / "fuzz.csv"
    text = ("pitch,step,duration,velocity\n" if header else "") + "\n".join(lines)
    try:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        path.write_bytes(text.encode("utf-8", "replace"))
    try:
        notes = read_csv(path)
    except MidiError as exc:
        check_clean(exc, str(path))
    else:
        check_notes(notes)


# -- specs ------------------------------------------------------------------------------------
json_value = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                          max_leaves=6)


@pytest.fixture(scope="module")
def valid_spec(tiny_checkpoint: Path) -> dict:
    from mpx.runtime.checkpoints import read_header
    return read_header(tiny_checkpoint).spec.to_dict()


@bounded(200)
@given(edits=st.lists(st.tuples(st.sampled_from(["top", "config", "sampling"]), st.text(max_size=14),
                                st.one_of(st.none(), json_value)), min_size=1, max_size=4),
       known=st.booleans())
def test_fuzzed_specs_are_accepted_valid_or_refused_with_a_spec_error(valid_spec: dict, edits: list, known: bool) -> None:
    spec = json.loads(json.dumps(valid_spec))
    for where, key, value in edits:
        target = spec if where == "top" else spec.get(where)
        if not isinstance(target, dict):
            continue
        if known and target:  # mostly damage the fields that exist
            key = sorted(target)[len(key) % len(target)]
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    try:
        parsed = ModelSpec.from_json(json.dumps(spec, allow_nan=True), source="fuzz.onnx")
    except SpecError as exc:
        check_clean(exc, "fuzz.onnx")
    else:
        parsed.check()
        parsed.config.check()
        assert parsed.spec_version == SPEC_VERSION


# -- option values ----------------------------------------------------------------------------
anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
                     st.lists(st.floats(), max_size=5).map(tuple))


@bounded(300)
@given(field=st.sampled_from(["notes", "temperature", "top_p", "seed", "mode", "num_outputs", "primer_notes"]),
       value=anything)
def test_any_generation_option_value_is_valid_or_one_options_error(field: str, value: object) -> None:
    try:
        options = GenerationOptions(**{field: value})
    except OptionsError as exc:  # named as the parameter (the CLI names it as its flag)
        assert exc.field == field and str(exc).startswith(field) and "\n" not in str(exc), str(exc)
    else:
        options.check()


@bounded(300)
@given(field=st.sampled_from(["epochs", "batch_size", "seq_len", "primer_len", "lr", "transpose", "reset_prob",
                              "pitch_weight", "step_weight", "duration_weight", "velocity_weight", "seed", "device"]),
       value=anything)
def test_any_training_option_value_is_valid_or_one_options_error(field: str, value: object) -> None:
    from mpx.train.options import TrainOptions
    if field == "device" and not isinstance(value, str):
        value = str(value)  # the CLI passes text; a non-text device is an API bug left to train/options.py
    try:
        options = TrainOptions(**{field: value})
    except OptionsError as exc:  # named as the parameter (the CLI names it as its flag)
        assert exc.field == field and str(exc).startswith(field) and "\n" not in str(exc), str(exc)
    else:
        options.check()
        number = getattr(options, field)
        if isinstance(number, float):
            assert math.isfinite(number)


# -- seeds through a whole run ----------------------------------------------------------------
@pytest.fixture(scope="module")
def generator(tiny_artifacts: Path):  # type: ignore[no-untyped-def]
    return load(tiny_artifacts / "music_producter.onnx", threads=1)


seed_rows = st.lists(st.tuples(st.integers(0, 127), st.sampled_from([0.0, 1e-6, 0.01, 0.5, 30.0, 1e5]),
                               st.sampled_from([0.0, 1e-6, 0.1, 2.0, 1e4]), st.integers(1, 127)),  # velocity 0 is a note-off
                     min_size=1, max_size=40)


@bounded(25)
@given(rows=seed_rows, notes=st.integers(1, 40), num_outputs=st.integers(1, 3),
       mode=st.sampled_from(["stateful", "window"]), suffix=st.sampled_from([".mid", ".csv"]))
def test_any_seed_gives_exactly_the_notes_asked_for(generator, rows: list, notes: int, num_outputs: int,  # type: ignore[no-untyped-def]
                                                    mode: str, suffix: str,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("seed")
    seed = folder / "seed.csv"
    seed.write_text("pitch,step,duration,velocity\n" + "\n".join(",".join(map(repr, r)) for r in rows) + "\n")
    result = generate_files(generator, seed, folder / f"out{suffix}",
                            GenerationOptions(notes=notes, num_outputs=num_outputs, mode=mode, seed=1))
    assert len(result.outputs) == num_outputs
    for path in result.outputs:
        written = read_notes(path) if suffix == ".mid" else read_csv(path)
        assert len(written) == notes  # every generated note survives the file, none invented
        check_notes(written)

"""The Node.js consumer (examples/node/generate.mjs on onnxruntime-node, protocol in
examples/web/mpx.js) against mpx: the notes `mpx run` makes.

Same seed, same primer, same options: the same pitches and velocities, times within 1e-5.
Needs node and `make web-deps` (which `make test` runs); skips with the reason otherwise. The
model is the bundled artifacts/music_producter.onnx, the reference mpx's own Generator.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deploy import CONTROL_CASES, ROOT, SEED_MIDI, assert_same_notes, contract_v2_spec, deploy_model, read_midi_notes, reference_notes, spec_of
from mpx.runtime import uniforms

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "examples"
SCRIPT = EXAMPLES / "node" / "generate.mjs"
MPX_JS = EXAMPLES / "web" / "mpx.js"
DATA = ROOT / "tests" / "data"
NOTES = 96
TIME_TOLERANCE = 1e-5
# CONTRACT_V2.md's test vectors: (seed, stream, note) -> the 8 uniforms.
VECTORS = {
    (0, 0, 0): [0.13870936632156372, 0.2582654356956482, 0.5748404264450073, 0.8156917095184326,
                0.005725681781768799, 0.7629507780075073, 0.47243988513946533, 0.264343798160553],
    (0, 1, 0): [0.5803592205047607, 0.6722736358642578, 0.9568397402763367, 0.7406097650527954,
                0.7467480301856995, 0.7736045718193054, 0.6864181160926819, 0.4341369867324829],
    (0, 0, 1): [0.09825599193572998, 0.9912828207015991, 0.6781437397003174, 0.5094797015190125,
                0.5389018654823303, 0.8304715752601624, 0.8822047114372253, 0.657706081867218],
    (42, 0, 1000): [0.3530592918395996, 0.7287887930870056, 0.8649685978889465, 0.7453455328941345,
                    0.9541337490081787, 0.827089786529541, 0.4979499578475952, 0.3364918828010559],
    (2**64 - 1, 0, 0): [0.9844383597373962, 0.8303028345108032, 0.6237224340438843, 0.664289116859436,
                        0.23342198133468628, 0.06281965970993042, 0.4869946241378784, 0.7355586290359497],
}


def missing_node_tools() -> str | None:
    """Why the Node consumer cannot run here, or None."""
    if shutil.which("node") is None:
        return "node not installed: run make web-deps"
    if not (EXAMPLES / "node_modules" / "onnxruntime-node").is_dir():
        return "examples/node_modules/onnxruntime-node missing: run make web-deps"
    return None


@pytest.fixture(scope="module")
def node() -> str:
    reason = missing_node_tools()
    if reason:
        print(f"skipping the Node consumer's tests: {reason}")
        pytest.skip(reason)
    return str(shutil.which("node"))


@pytest.fixture(scope="module")
def model() -> Path:
    return deploy_model(".onnx")


@pytest.fixture(scope="module")
def seed_notes() -> np.ndarray:
    return read_midi_notes(SEED_MIDI)


def run_js(node: str, code: str) -> object:
    """Run an ES module snippet that imports mpx.js as `mpx`; returns what it prints as JSON."""
    source = f"import * as mpx from {json.dumps(MPX_JS.as_uri())};\n{code}"
    done = subprocess.run([node, "--input-type=module", "-e", source], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def generate(node: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def write_csv(notes: np.ndarray, path: Path) -> Path:
    np.savetxt(path, notes, fmt="%.9g", delimiter=",", header="pitch,step,duration,velocity", comments="")
    return path


def read_csv(path: Path) -> np.ndarray:
    assert path.read_text().splitlines()[0] == "pitch,step,duration,velocity"
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)


# -- the pieces of the protocol ------------------------------------------------------------------

def test_random_stream_matches_the_contract_vectors(node: str) -> None:
    keys = [[str(seed), stream, note] for seed, stream, note in VECTORS]
    got = run_js(node, f"console.log(JSON.stringify({json.dumps(keys)}.map(([s, b, n]) => "
                       "Array.from(mpx.noteUniforms(mpx.streamKey(BigInt(s), b), n)))));")
    for (key, want), values in zip(VECTORS.items(), got):
        assert values == want, f"uniforms{key}"
        assert values == uniforms(key[0], key[1] + 1, key[2], 1)[0, key[1]].tolist(), f"mpx, uniforms{key}"
    assert run_js(node, "console.log(JSON.stringify([mpx.splitmix64(0n), mpx.splitmix64(1n)].map(String)))") == \
        [str(0xE220A8397B1DCDAF), str(0x910A2DEC89025CC1)]


def tricky_midi(path: Path) -> Path:
    """A file that exercises pretty_midi's conventions: a tempo map with a change on track 0
    (and one on track 1, which pretty_midi ignores), two piano tracks with a program change, a
    drum channel, a same-pitch note re-struck before its note-off, a note-on and note-off on one
    tick (dropped), a velocity-0 note-on as note-off, and identical onsets of different pitches."""
    import mido
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    events = [  # (track, absolute tick, message)
        (0, 0, mido.MetaMessage("set_tempo", tempo=500000)),
        (0, 960, mido.MetaMessage("set_tempo", tempo=400000)),
        (0, 1500, mido.MetaMessage("set_tempo", tempo=400000)),
        (0, 1920, mido.MetaMessage("set_tempo", tempo=750000)),
        (1, 300, mido.MetaMessage("set_tempo", tempo=300000)),
        (1, 0, mido.Message("note_on", note=60, velocity=80)),
        (1, 0, mido.Message("note_on", note=64, velocity=70)),
        (1, 240, mido.Message("note_on", note=60, velocity=90)),   # re-struck while sounding
        (1, 480, mido.Message("note_off", note=60)),               # closes both 60s
        (1, 480, mido.Message("note_on", note=64, velocity=0)),
        (1, 700, mido.Message("note_on", note=67, velocity=50)),
        (1, 700, mido.Message("note_off", note=67)),               # zero length: dropped
        (1, 1000, mido.Message("program_change", program=5)),
        (1, 1000, mido.Message("note_on", note=55, velocity=100)),
        (1, 2500, mido.Message("note_off", note=55)),
        (2, 960, mido.Message("note_on", note=72, velocity=33, channel=1)),
        (2, 960, mido.Message("note_on", note=48, velocity=44, channel=1)),
        (2, 961, mido.Message("note_on", note=36, velocity=120, channel=9)),  # drum: left out
        (2, 1100, mido.Message("note_off", note=36, channel=9)),
        (2, 3000, mido.Message("note_off", note=72, channel=1)),
        (2, 3100, mido.Message("note_off", note=48, channel=1)),
    ]
    for index in range(3):
        track = mido.MidiTrack()
        tick = 0
        for _, at, message in sorted((e for e in events if e[0] == index), key=lambda e: e[1]):
            track.append(message.copy(time=at - tick))
            tick = at
        midi.tracks.append(track)
    midi.save(str(path))
    return path


def midi_files_to_compare(tmp_path: Path) -> list[Path]:
    return [SEED_MIDI, *sorted((DATA / "midi").glob("*.mid")), *sorted((DATA / "seeds").glob("*.mid")),
            tricky_midi(tmp_path / "tricky.mid")]


def test_midi_primer_notes_equal_pretty_midis(node: str, tmp_path: Path) -> None:
    """Notes from MIDI, float32 bit for bit: what the page and the script read equals mpx's way."""
    files = midi_files_to_compare(tmp_path)
    code = (f"import {{ readFileSync }} from 'node:fs';\nconsole.log(JSON.stringify({json.dumps([str(f) for f in files])}"
            ".map((f) => Array.from(mpx.notesFromMidi(new Uint8Array(readFileSync(f)), f)))));")
    for path, flat in zip(files, run_js(node, code)):
        want = read_midi_notes(path)
        got = np.asarray(flat, dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(got, want, err_msg=f"notes of {path.name}")


def test_csv_round_trips_float32(node: str) -> None:
    values = np.array([0, 1e-9, 1.5e-5, 0.1, 0.95, 1 / 3, 2.5, 60, 127, 4.00999975, 123456.789, 3.4e38], np.float32)
    text = run_js(node, f"console.log(JSON.stringify(mpx.notesToCsv(Float32Array.from({json.dumps(values.tolist())}))));")
    lines = text.splitlines()
    assert lines[0] == "pitch,step,duration,velocity"
    back = np.array([float(v) for line in lines[1:] for v in line.split(",")], np.float32)
    np.testing.assert_array_equal(back, values)


# -- the script against the reference ----------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_sampled_notes_equal_the_reference(node: str, model: Path, seed_notes: np.ndarray, tmp_path: Path,
                                           seed: int, temperature: float) -> None:
    out = tmp_path / "out.csv"
    done = generate(node, model, SEED_MIDI, out, "--notes", NOTES, "--seed", seed, "--temperature", temperature)
    assert done.returncode == 0, done.stderr
    want = reference_notes(model, seed_notes, seed, NOTES, temperature)  # top-p: the spec's default, as node
    assert_same_notes(read_csv(out), want)


def test_greedy_notes_equal_the_reference(node: str, model: Path, seed_notes: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "greedy.csv"
    done = generate(node, model, SEED_MIDI, out, "--notes", NOTES, "--temperature", 0, "--seed", 5)
    assert done.returncode == 0, done.stderr
    want = reference_notes(model, seed_notes, 5, NOTES, 0.0, 0.95)
    assert_same_notes(read_csv(out), want)
    # Greedy ignores the uniforms: another seed, the same notes.
    again = generate(node, model, SEED_MIDI, "-", "--notes", NOTES, "--temperature", 0, "--seed", 6)
    assert again.stdout == out.read_text()


def test_csv_primer_and_per_attribute_options(node: str, model: Path, tmp_path: Path) -> None:
    """A CSV primer (longer than seq_len: its tail is the primer) and four values per option."""
    notes = read_midi_notes(DATA / "seeds" / "chopin_etude_op25_4.mid")[:300]
    primer = write_csv(notes, tmp_path / "primer.csv")
    out = tmp_path / "out.csv"
    done = generate(node, model, primer, out, "--notes", 80, "--seed", 11,
                    "--temperature", "1,0.6,0.6,0.9", "--top-p", "0.9,0.8,0.8,1")
    assert done.returncode == 0, done.stderr
    want = reference_notes(model, notes, 11, 80, [1, 0.6, 0.6, 0.9], [0.9, 0.8, 0.8, 1])
    assert_same_notes(read_csv(out), want)


@pytest.mark.parametrize("case", list(CONTROL_CASES))
def test_controls_give_mpxs_notes(node: str, model: Path, seed_notes: np.ndarray, tmp_path: Path, case: str) -> None:
    """The control flags as `mpx run`'s: the ones asked for, their families released, the rest
    the primer's (runtime/controls.resolve)."""
    flags, controls, key = CONTROL_CASES[case]
    out = tmp_path / "out.csv"
    done = generate(node, model, SEED_MIDI, out, "--notes", NOTES, "--seed", 9, "--temperature", 0.9, *flags)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    want = reference_notes(model, seed_notes, 9, NOTES, 0.9, controls=controls, key=key)
    assert_same_notes(read_csv(out), want, case)
    assert not np.array_equal(want, reference_notes(model, seed_notes, 9, NOTES, 0.9)), f"{case}: the controls change nothing"


def test_show_controls_says_what_is_fed(node: str, model: Path, seed_notes: np.ndarray) -> None:
    from mpx.runtime import controls as ctl
    done = generate(node, model, SEED_MIDI, "-", "--notes", 2, "--velocity-mean", 50, "--density", "none", "--show-controls")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    fed = ctl.resolve(seed_notes[-spec_of(model).seq_len:], {"velocity_mean": 50.0, "density": None})
    assert len(lines) == ctl.C and [line.split()[0] for line in lines] == list(ctl.CONTROLS)
    assert lines[ctl.CONTROLS.index("velocity_mean")].startswith("velocity_mean 50 ")
    assert "not given" in lines[0] and "as asked" in lines[0]
    for name, value, line in zip(ctl.CONTROLS, fed, lines):
        if value >= 0:
            assert float(line.split()[1]) == pytest.approx(float(value), rel=1e-8), line


def test_a_contract_v2_model_is_refused_in_one_line(node: str, model: Path, tmp_path: Path) -> None:
    import onnx
    graph = onnx.load(str(model))
    for prop in graph.metadata_props:
        if prop.key == "mpx_spec":
            prop.value = json.dumps(contract_v2_spec(json.loads(prop.value)))
    old = tmp_path / "v2.onnx"
    onnx.save(graph, str(old))
    out = tmp_path / "out.csv"
    done = generate(node, old, SEED_MIDI, out)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert str(old) in lines[0] and "follows graph contract v2; this consumer runs v3" in lines[0]
    assert not out.exists()


def test_defaults_come_from_the_spec(node: str, model: Path, seed_notes: np.ndarray) -> None:
    sampling = spec_of(model).sampling.to_dict()
    done = generate(node, model, SEED_MIDI, "-", "--notes", 40)
    assert done.returncode == 0, done.stderr
    got = np.loadtxt(done.stdout.splitlines()[1:], delimiter=",", dtype=np.float32)
    assert_same_notes(got, reference_notes(model, seed_notes, 0, 40, sampling["temperature"], sampling["top_p"]))


def test_bench_prints_notes_per_second(node: str, model: Path, tmp_path: Path) -> None:
    done = generate(node, model, SEED_MIDI, tmp_path / "out.csv", "--notes", 512, "--bench")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "notes/s" in line
    print(f"\nnode: {line}")


# -- bad input: one line on stderr, non-zero exit, no output file -------------------------------

def no_notes_csv(path: Path) -> Path:
    path.write_text("pitch,step,duration,velocity\n")
    return path


BAD_RUNS = {
    "unknown flag": (["--bogus"], "Unknown option '--bogus'"),
    "top-p above 1": (["--top-p", "1.5"], "top-p must be in (0, 1]"),
    "negative temperature": (["--temperature=-1"], "temperature must be >= 0"),
    "three temperatures": (["--temperature", "1,1,1"], "one value or four"),
    "zero notes": (["--notes", "0"], "notes must be an integer"),
    "negative seed": (["--seed=-3"], "seed must be an integer"),
    "value that looks like a flag": (["--seed", "-3"], "argument is ambiguous"),
    "seed over 2^64": (["--seed", str(2**64)], "seed must be an integer"),
    "control out of range": (["--chord-share", "2"], "--chord-share 2 is out of range; allowed 0..1"),
    "control not a number": (["--density", "abc"], "--density must be a number"),
    "not a key": (["--key", "H"], "--key 'H' is not a key"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_flags_fail_in_one_line(node: str, model: Path, tmp_path: Path, case: str) -> None:
    flags, expected = BAD_RUNS[case]
    out = tmp_path / "out.csv"
    done = generate(node, model, SEED_MIDI, out, *flags)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing primer", "missing model", "text as MIDI", "too few notes",
                                  "bad CSV", "truncated MIDI", "model is not ONNX"])
def test_bad_files_fail_in_one_line(node: str, model: Path, tmp_path: Path, case: str) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("pitch,step,duration,velocity\n60,0,0.5\n")
    primer, model_arg, expected = {
        "missing primer": (tmp_path / "nope.mid", model, "no such file"),
        "missing model": (SEED_MIDI, tmp_path / "nope.onnx", "no such file"),
        "text as MIDI": (text, model, "is not a MIDI file"),
        "too few notes": (no_notes_csv(tmp_path / "few.csv"), model, "holds no notes"),
        "bad CSV": (bad_csv, model, "line 2: expected 4 numbers"),
        "truncated MIDI": (DATA / "bad-midi" / "synthetic_derived" / "truncated_maestro1_3000B.mid", model, "truncated"),
        "model is not ONNX": (SEED_MIDI, text, "not an ONNX model"),
    }[case]
    out = tmp_path / "out.csv"
    done = generate(node, model_arg, primer, out)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("generate.mjs: ") and expected in lines[0], done.stderr
    assert not out.exists()


def test_bad_midi_files_never_crash(node: str, model: Path, tmp_path: Path) -> None:
    """Every file of tests/data/bad-midi: notes or one clear line, never a stack trace."""
    for path in sorted(p for p in (DATA / "bad-midi").rglob("*") if p.is_file()):
        done = generate(node, model, path, tmp_path / "out.csv", "--notes", 4)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 0 or (done.returncode == 1 and len(lines) == 1
                                        and lines[0].startswith("generate.mjs: ")), f"{path.name}: {done.stderr}"


def test_out_is_written_in_the_format_its_suffix_names(node: str, model: Path, tmp_path: Path) -> None:
    as_csv, as_midi = tmp_path / "out.csv", tmp_path / "out.mid"
    for out in (as_csv, as_midi):
        done = generate(node, model, SEED_MIDI, out, "--notes", 48, "--seed", 3)
        assert done.returncode == 0, done.stderr
    assert as_midi.read_bytes()[:4] == b"MThd"  # MIDI, not CSV text under a .mid name
    notes, midi = read_csv(as_csv), read_midi_notes(as_midi)
    np.testing.assert_array_equal(midi[:, [0, 3]], notes[:, [0, 3]])
    onsets = np.cumsum(notes[:, 1])  # a MIDI file's first note starts its time: read back, its step is 0
    np.testing.assert_allclose(np.cumsum(midi[:, 1]), onsets - onsets[0], atol=6e-4)  # a tick at 120 bpm, 960 ppq


def test_outputs_are_not_replaced_without_force(node: str, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mid"
    out.write_bytes(b"the user's file")
    refused = generate(node, model, SEED_MIDI, out, "--notes", 8)
    assert refused.returncode == 1 and f"OUT {out}: exists; pass --force" in refused.stderr
    assert out.read_bytes() == b"the user's file"
    assert generate(node, model, SEED_MIDI, out, "--notes", 8, "--force").returncode == 0
    for bad, message, code in ((tmp_path / "out.txt", "writes .csv, .mid or .midi files only (not '.txt')", 2),
                               (SEED_MIDI, "is the input", 1)):
        done = generate(node, model, SEED_MIDI, bad, "--notes", 8, "--force")
        assert done.returncode == code and message in done.stderr, done.stderr
    assert not (tmp_path / "out.txt").exists()

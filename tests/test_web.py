"""The web page (examples/web) in headless Debian Chromium, against mpx: the notes `mpx run`
makes for the same primer, seed and sampling.

One browser session (examples/web/e2e/drive.mjs, playwright-core) works the page through its
controls as a person would: it generates from the bundled seed with several seeds and
temperatures, greedy and with four values per option, downloads the MIDI, gives it files (a
text file and a MIDI with no notes through the file input, a real MIDI dropped on the drop
zone) and plays. The tests then check what the page showed: the same pitches and velocities as
mpx, times within 1e-5, clear messages.
It also draws the page into a PNG in a temporary folder, or where $MPX_WEB_SCREENSHOT says:
`make screenshot` redraws the tracked examples/web/screenshot.png (docs/deployment.md and the
web README show it) that way.
Needs node, `make web-deps` and /usr/bin/chromium; skips with the reason otherwise.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deploy import CONTROL_CASES, ROOT, SEED_MIDI, assert_same_notes, deploy_model, read_midi_notes, reference_notes, spec_of

pytestmark = pytest.mark.slow

WEB = ROOT / "examples" / "web"
NODE_MODULES = ROOT / "examples" / "node_modules"
CHROMIUM = Path(os.environ.get("MPX_CHROMIUM", "/usr/bin/chromium"))
DROPPED = ROOT / "tests" / "data" / "seeds" / "chopin_etude_op25_4.mid"
NOTES = 96
TIME_TOLERANCE = 1e-5
SAMPLED = [(seed, temperature) for seed in (0, 7, 2**64 - 1) for temperature in (1.0, 0.7)]


def missing_web_tools() -> str | None:
    """Why the page cannot be tested here, or None."""
    if not CHROMIUM.is_file():
        return f"chromium not installed ({CHROMIUM}): run make web-deps"
    if shutil.which("node") is None:
        return "node not installed: run make web-deps"
    for package in ("onnxruntime-web", "playwright-core", "midi-file", "protobufjs"):
        if not (NODE_MODULES / package).is_dir():
            return f"examples/node_modules/{package} missing: run make web-deps"
    return None


@pytest.fixture(scope="module")
def model() -> Path:
    reason = missing_web_tools()
    if reason:
        print(f"skipping the web page's tests: {reason}")
        pytest.skip(reason)
    return deploy_model(".onnx")


def load_serve_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mpx_web_serve", WEB / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def url(model: Path) -> Iterator[str]:
    """examples/web served on 127.0.0.1 (a free port) by serve.py, in a thread of this process."""
    server = load_serve_module().make_server(WEB, 0, model, SEED_MIDI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def no_notes_midi(path: Path) -> Path:
    """A valid MIDI file with a piano track and no notes: nothing to prime the model with."""
    import pretty_midi
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(program=0))
    midi.write(str(path))
    return path


def generate_step(seed: int, temperature: str | float, top_p: str | float = 0.95, notes: int = NOTES) -> dict:
    return {"do": "generate", "notes": notes, "seed": str(seed), "temperature": str(temperature), "top_p": str(top_p)}


def control_fields(flags: list[str]) -> dict[str, str]:
    """The page's control fields (by id) for a consumer's flags: --density 6 -> density: "6"."""
    return {flag.removeprefix("--"): value for flag, value in zip(flags[::2], flags[1::2])}


def screenshot_path(tmp: Path) -> Path:
    """Where the page is drawn: a temporary file (a test writes no tracked file), or
    $MPX_WEB_SCREENSHOT (`make screenshot`)."""
    return Path(os.environ.get("MPX_WEB_SCREENSHOT") or tmp / "screenshot.png")


def plan_steps(tmp: Path) -> dict[str, dict]:
    """The session, in order: name -> step (Python 3.7+ dicts keep the order)."""
    text = tmp / "notes.mid"
    text.write_text("these are not notes\n")
    steps = {f"sampled {seed} {t}": generate_step(seed, t) for seed, t in SAMPLED[:1]}
    steps["download"] = {"do": "download", "path": str(tmp / "download.mid")}
    steps.update({f"sampled {seed} {t}": generate_step(seed, t) for seed, t in SAMPLED[1:]})
    steps["greedy"] = generate_step(5, 0)
    steps["per attribute"] = generate_step(11, "1,0.6,0.6,0.9", "0.9,0.8,0.8,1")
    for case, (flags, _, _) in CONTROL_CASES.items():
        steps[f"controls {case}"] = {**generate_step(9, 0.9), "controls": control_fields(flags)}
    steps["bad top-p"] = generate_step(0, 1, "1.5")
    steps["bad control"] = {**generate_step(0, 1), "controls": {"chord-share": "2"}}
    steps["bad key"] = {**generate_step(0, 1), "controls": {"key": "H"}}
    steps["text file"] = {"do": "upload", "path": str(text)}
    steps["few notes"] = {"do": "upload", "path": str(no_notes_midi(tmp / "no-notes.mid"))}
    steps["good file"] = {"do": "drop", "path": str(DROPPED)}
    steps["from the file"] = generate_step(9, 1)
    steps["bundled again"] = {"do": "bundled"}
    steps["long run"] = generate_step(3, 1, notes=512)
    steps["play"] = {"do": "play"}
    steps["showcase"] = {"do": "generate", "notes": 256, "seed": "0", "temperature": "1", "top_p": "0.95"}
    steps["screenshot"] = {"do": "screenshot", "path": str(screenshot_path(tmp))}
    return steps


@pytest.fixture(scope="module")
def session(url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the whole browser session once; every test reads its part."""
    tmp = tmp_path_factory.mktemp("web")
    steps = plan_steps(tmp)
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({"url": url, "chromium": str(CHROMIUM), "steps": list(steps.values())}))
    done = subprocess.run(["node", str(WEB / "e2e" / "drive.mjs"), str(plan)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the browser session failed: {done.stderr[-3000:]}"
    result = json.loads(done.stdout)
    return {"start": result["start"], "errors": result["errors"], "tmp": tmp,
            **dict(zip(steps, result["steps"]))}


@pytest.fixture(scope="module")
def seed_notes() -> np.ndarray:
    return read_midi_notes(SEED_MIDI)


def page_notes(step: dict) -> np.ndarray:
    assert not step["error"], step["message"]
    return np.asarray(step["result"]["generated"], dtype=np.float32).reshape(-1, 4)


# -- the page's notes against the reference ----------------------------------------------------

def test_page_starts_ready(session: dict, model: Path) -> None:
    start = session["start"]
    assert start["state"] == "ready", start["message"]
    spec = spec_of(model).to_dict()
    # What the page says about the model comes from the spec inside the file.
    assert f"× {spec['config']['hidden']}" in start["model_info"]
    assert f"primer {spec['seq_len']} notes" in start["model_info"]


@pytest.mark.parametrize("seed, temperature", SAMPLED)
def test_sampled_notes_equal_the_reference(session: dict, model: Path, seed_notes: np.ndarray,
                                           seed: int, temperature: float) -> None:
    step = session[f"sampled {seed} {temperature}"]
    assert step["result"]["seed"] == str(seed)
    primer = np.asarray(step["result"]["primer"], dtype=np.float32)
    np.testing.assert_array_equal(primer, seed_notes[-len(primer):], err_msg="the page's primer")
    assert_same_notes(page_notes(step), reference_notes(model, seed_notes, seed, NOTES, temperature, 0.95))


def test_greedy_notes_equal_the_reference(session: dict, model: Path, seed_notes: np.ndarray) -> None:
    assert_same_notes(page_notes(session["greedy"]), reference_notes(model, seed_notes, 5, NOTES, 0.0, 0.95))


def test_per_attribute_options(session: dict, model: Path, seed_notes: np.ndarray) -> None:
    want = reference_notes(model, seed_notes, 11, NOTES, [1, 0.6, 0.6, 0.9], [0.9, 0.8, 0.8, 1])
    assert_same_notes(page_notes(session["per attribute"]), want)


@pytest.mark.parametrize("case", list(CONTROL_CASES))
def test_controls_give_mpxs_notes(session: dict, model: Path, seed_notes: np.ndarray, case: str) -> None:
    """The page's control fields as `mpx run`'s flags: the ones asked for, their families
    released, the rest the seed's (runtime/controls.resolve)."""
    from mpx.runtime import controls as ctl
    _, controls, key = CONTROL_CASES[case]
    step = session[f"controls {case}"]
    want = reference_notes(model, seed_notes, 9, NOTES, 0.9, 0.95, controls, key)
    assert_same_notes(page_notes(step), want, case)
    requested = dict(controls)
    if key is not None:
        requested.update(zip(ctl.PITCH_CLASSES, map(float, ctl.key_profile(key))))
    fed = ctl.resolve(seed_notes[-spec_of(model).seq_len:], requested)
    np.testing.assert_array_equal(np.float32(step["result"]["controls"]), fed, err_msg=f"{case}: the controls fed")


def test_the_page_shows_the_seeds_own_controls(session: dict, model: Path, seed_notes: np.ndarray) -> None:
    """Beside each field: the bundled seed's own value (what a blank field feeds)."""
    from mpx.runtime import controls as ctl
    own = ctl.primer_summaries(seed_notes[-spec_of(model).seq_len:])
    shown = session[f"sampled {SAMPLED[0][0]} {SAMPLED[0][1]}"]["seed_controls"]
    for name in ctl.CONTROLS[:6]:
        field = shown[name.replace("_", "-")]
        assert float(field["value"]) == float(own[ctl.CONTROLS.index(name)]), (name, field)
        assert field["text"].startswith("seed: "), field
    assert shown["key"]["text"].startswith("seed: its own profile (closest: "), shown["key"]
    # a blank field is the seed's: the plain sampled run fed the seed's summaries, the register left free
    fed = session[f"sampled {SAMPLED[0][0]} {SAMPLED[0][1]}"]["result"]["controls"]
    np.testing.assert_array_equal(np.float32(fed), ctl.resolve(seed_notes[-spec_of(model).seq_len:]))


def test_a_dropped_midi_file_is_the_seed(session: dict, model: Path) -> None:
    assert not session["good file"]["error"] and session["good file"]["using_file"], session["good file"]
    step = session["from the file"]
    assert step["result"]["seed_file"] == DROPPED.name
    notes = read_midi_notes(DROPPED)
    assert_same_notes(page_notes(step), reference_notes(model, notes, 9, NOTES, 1.0, 0.95))


def test_long_run_and_speed(session: dict, model: Path, seed_notes: np.ndarray) -> None:
    step = session["long run"]
    assert step["result"]["seed_file"] == SEED_MIDI.name, "the bundled seed again after a dropped file"
    assert_same_notes(page_notes(step), reference_notes(model, seed_notes, 3, 512, 1.0, 0.95))
    assert step["notes_per_second"] > 0 and "notes/s" in step["speed"]
    print(f"\nbrowser: {step['speed']}")


def test_download_is_the_generated_midi_with_velocities(session: dict) -> None:
    import pretty_midi
    assert session["download"]["name"].endswith(".mid")
    midi = pretty_midi.PrettyMIDI(str(session["tmp"] / "download.mid"))
    (piano,) = midi.instruments
    got = sorted((round(n.start * 1920), n.pitch, n.velocity) for n in piano.notes)
    notes = page_notes(session[f"sampled {SAMPLED[0][0]} {SAMPLED[0][1]}"])
    starts = np.cumsum(notes[:, 1].astype(np.float64))
    want = sorted((round(s * 1920), int(p), int(v)) for s, p, v in zip(starts, notes[:, 0], notes[:, 3]))
    assert [g[1:] for g in got] == [w[1:] for w in want]
    assert max(abs(g[0] - w[0]) for g, w in zip(got, want)) <= 1, "onsets off by more than a tick"


# -- what a person sees --------------------------------------------------------------------------

@pytest.mark.parametrize("case, expected", [
    ("text file", "notes.mid is not a MIDI file (no MThd header)"),
    ("few notes", "no-notes.mid holds no notes"),
    ("bad top-p", "top-p must be in (0, 1]"),
    ("bad control", "chord share 2 is out of range; allowed 0..1"),
    ("bad key", "key 'H' is not a key"),
])
def test_bad_input_shows_a_clear_message(session: dict, case: str, expected: str) -> None:
    step = session[case]
    assert step["error"] and expected in step["message"], step


def test_play_toggles_and_the_synthesizer_sounds(session: dict) -> None:
    play = session["play"]
    assert (play["label_while_playing"], play["label_after"]) == ("Stop", "Play")
    levels = play["levels"]  # the first 2 s of the notes, rendered offline
    assert levels["finite"] and 0.01 < levels["peak"] <= 1.0 and levels["rms"] > 1e-3, levels


def test_no_errors_in_the_page(session: dict) -> None:
    assert session["errors"] == []


def test_screenshot_saved(session: dict) -> None:
    assert session["showcase"]["result"]["notes"] == 256
    screenshot = screenshot_path(session["tmp"])
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:4] == b"\x89PNG"

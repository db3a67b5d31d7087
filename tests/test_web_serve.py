"""The web page's server switch, in headless Chromium: with "server" ticked the page sends the
primer and options to `mpx serve` (another origin: this machine's pages may call it) and shows
the notes it streams back, the notes `mpx run` makes; a server that is not there, or that
refuses the options, is one line on the page. Needs what tests/test_web.py needs."""
from __future__ import annotations

import json
import subprocess
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")

from deploy import SEED_MIDI, assert_same_notes, deploy_model, read_midi_notes, reference_notes  # noqa: E402
from serve_helpers import free_port, server_process  # noqa: E402
from test_web import CHROMIUM, WEB, load_serve_module, missing_web_tools  # noqa: E402

pytestmark = pytest.mark.slow
NOTES = 96


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    reason = missing_web_tools()
    if reason:
        pytest.skip(reason)
    model = deploy_model(".onnx")
    page = load_serve_module().make_server(WEB, 0, model, SEED_MIDI)
    thread = threading.Thread(target=page.serve_forever, daemon=True)
    thread.start()
    tmp = tmp_path_factory.mktemp("web-serve")
    try:
        with server_process(str(model), "--max-notes", "500") as (proc, url):
            steps = {
                "server on": {"do": "check", "id": "use-server", "on": True},
                "server url": {"do": "fill", "id": "server-url", "value": url},
                "sampled": {"do": "generate", "notes": NOTES, "seed": "7", "temperature": "1", "top_p": "0.95"},
                "per attribute": {"do": "generate", "notes": NOTES, "seed": "18446744073709551615",
                                  "temperature": "1,0.6,0.6,0.9", "top_p": "0.9,0.8,0.8,1"},
                "too many": {"do": "generate", "notes": 1000, "seed": "1", "temperature": "1", "top_p": "0.95"},
                "nobody there": {"do": "fill", "id": "server-url", "value": f"http://127.0.0.1:{free_port()}"},
                "unreachable": {"do": "generate", "notes": 8, "seed": "1", "temperature": "1", "top_p": "0.95"},
                "server off": {"do": "check", "id": "use-server", "on": False},
                "in the browser": {"do": "generate", "notes": NOTES, "seed": "7", "temperature": "1", "top_p": "0.95"},
            }
            plan = tmp / "plan.json"
            plan.write_text(json.dumps({"url": f"http://127.0.0.1:{page.server_address[1]}/", "chromium": str(CHROMIUM),
                                        "steps": list(steps.values())}))
            done = subprocess.run(["node", str(WEB / "e2e" / "drive.mjs"), str(plan)], capture_output=True, text=True, timeout=600)
    finally:
        page.shutdown()
        page.server_close()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    return {"errors": result["errors"], "server_log": proc.log_text, **dict(zip(steps, result["steps"]))}


def notes(step: dict) -> np.ndarray:
    assert not step["error"], step["message"]
    return np.asarray(step["result"]["generated"], dtype=np.float32).reshape(-1, 4)


def test_the_server_makes_mpx_runs_notes(session: dict) -> None:
    model, primer = deploy_model(".onnx"), read_midi_notes(SEED_MIDI)
    step = session["sampled"]
    assert step["result"]["runtime"].startswith("mpx serve at http://127.0.0.1:")
    assert_same_notes(notes(step), reference_notes(model, primer, 7, NOTES, 1.0, 0.95))
    assert_same_notes(notes(session["per attribute"]), reference_notes(model, primer, 2**64 - 1, NOTES, [1, 0.6, 0.6, 0.9], [0.9, 0.8, 0.8, 1]))
    assert "POST /v1/generate HTTP/1.1\" 200" in session["server_log"]


def test_server_and_browser_agree(session: dict) -> None:
    assert session["in the browser"]["result"]["runtime"].startswith("onnxruntime-web")
    np.testing.assert_array_equal(notes(session["in the browser"])[:, [0, 3]], notes(session["sampled"])[:, [0, 3]])


def test_refusals_and_a_missing_server_are_one_line(session: dict) -> None:
    assert session["too many"]["error"] and session["too many"]["message"] == "server: notes: must be an integer 1..500, got 1000", session["too many"]
    assert session["unreachable"]["error"] and session["unreachable"]["message"].startswith("cannot reach the server at"), session["unreachable"]
    # the browser reports refused requests and unreachable hosts as console errors of its own; nothing else
    assert all("/v1/generate" in e or "Failed to load resource" in e or "ERR_CONNECTION_REFUSED" in e for e in session["errors"]), session["errors"]

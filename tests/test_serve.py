"""`mpx serve` in this process (httpx on the ASGI app): the notes, the batching, the limits,
the sessions, the metrics. tests/test_serve_process.py runs it as a real process."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

from serve_helpers import MODEL, notes_of, reference, run_app, seed_notes, stream_notes  # noqa: E402
from deploy import assert_same_notes  # noqa: E402

SETTINGS = [  # (temperature, top_p): four sampling groups share the server
    (None, None), (0.7, 0.9), (0.0, 1.0), ([1.0, 0.9, 0.9, 1.0], [0.95, 0.9, 0.9, 1.0])]


def mixed_requests(count: int) -> list[dict]:
    """Mixed lengths, settings, seeds, primers, and how the answer comes (whole or streamed)."""
    rng = np.random.default_rng(20)
    seed = seed_notes()
    out = []
    for i in range(count):
        temperature, top_p = SETTINGS[i % len(SETTINGS)]
        body = {"notes": int(rng.integers(1, 300)), "seed": 1000 + i}
        if temperature is not None:
            body.update(temperature=temperature, top_p=top_p)
        if i % 5 == 1:  # another primer: a cut of the seed, sometimes a single note
            end = int(rng.integers(1, len(seed)))
            body["primer"] = seed[max(0, end - int(rng.integers(1, 200))):end].tolist()
        body["stream"] = i % 3 == 0
        out.append(body)
    return out


async def answer(client, body: dict) -> np.ndarray:
    if body.get("stream"):
        events, notes = await stream_notes(client, body)
        assert events[0]["event"] == "start" and events[-1] == {"event": "end", "count": body["notes"], "seed": str(body["seed"])}
        return notes
    response = await client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    return notes_of(response.json())


def test_one_request_continues_the_seed_as_mpx_run() -> None:
    async def test(client, app):
        response = await client.post("/v1/generate", json={"notes": 64, "seed": 7})
        assert response.status_code == 200
        doc = response.json()
        assert doc["seed"] == "7" and doc["count"] == 64 and doc["primer_notes"] == 128
        return notes_of(doc)
    assert_same_notes(run_app(test), reference(seed_notes(), 7, 64))


def test_64_concurrent_requests_get_the_notes_they_get_alone_and_mpx_runs() -> None:
    """The key property: a listener's notes do not depend on who else is served. 64 requests
    of mixed lengths, settings and primers at once (four sampling groups, batches of every
    size as streams start and end) give bit for bit the notes each gets alone, and `mpx run`'s
    notes (pitch and velocity identical, times within 1e-5: the bar of every consumer)."""
    requests = mixed_requests(64)

    async def together(client, app):
        return await asyncio.gather(*(answer(client, body) for body in requests))

    async def alone(client, app):
        return [await answer(client, body) for body in requests]

    def rows_per_call(client_app_result):
        return client_app_result

    async def together_with_metrics(client, app):
        notes = await together(client, app)
        text = (await client.get("/metrics")).text
        return notes, text

    batched, metrics = run_app(together_with_metrics)
    single = run_app(alone)
    mean_rows = _histogram_mean(metrics, "mpx_batch_rows")
    assert mean_rows > 4, f"the requests were not batched (mean rows per call {mean_rows:.1f})"
    primer_all = seed_notes()
    for body, got, solo in zip(requests, batched, single):
        assert got.shape == (body["notes"], 4)
        np.testing.assert_array_equal(got, solo, err_msg=f"request {body['seed']}: notes depend on the company")
        primer = np.asarray(body["primer"], np.float32) if "primer" in body else primer_all
        assert_same_notes(got, reference(primer, body["seed"], body["notes"], body.get("temperature"), body.get("top_p")),
                          f"request {body['seed']}")


def test_exact_requests_are_bit_for_bit_mpx_run() -> None:
    requests = [{**body, "exact": True} for body in mixed_requests(12)]

    async def test(client, app):
        return await asyncio.gather(*(answer(client, body) for body in requests))
    for body, got in zip(requests, run_app(test)):
        primer = np.asarray(body["primer"], np.float32) if "primer" in body else seed_notes()
        np.testing.assert_array_equal(got, reference(primer, body["seed"], body["notes"], body.get("temperature"), body.get("top_p")))


def _histogram_mean(text: str, name: str) -> float:
    total = float(re.search(rf"^{name}_sum (\S+)$", text, re.M).group(1))
    count = float(re.search(rf"^{name}_count (\S+)$", text, re.M).group(1))
    return total / max(count, 1)


def test_row_padding_makes_a_rows_bits_its_own() -> None:
    """Why batched calls are padded to a multiple of 4 rows: onnxruntime's LSTM kernel rounds
    rows of a partial block differently. With padding, a row's state and note are the same bits
    wherever it sits in a batch of any size (measured here on the bundled model): rows of
    sessions joined in any order and number, stepping one note, or primers of one length."""
    from mpx.runtime import Session, load
    from mpx.runtime.serve.padding import PaddedBackend
    gen = load(MODEL, threads=1)
    padded = {4: PaddedBackend(gen.backend, 4), 1: PaddedBackend(gen.backend, 1)}
    primer = seed_notes()[-128:]

    def row(seed: int, quantum: int, pending: np.ndarray, steps: int = 0) -> Session:
        session = Session(padded[quantum], 1, seed=seed)
        session.prime(primer)
        for _ in range(steps):
            session.step()
        if len(pending):
            session.append(pending)
        return session

    def outcome(specs, quantum):
        batch = Session(padded[quantum], 0, seed=0)
        for seed, steps, pending in specs:
            batch.join(row(seed, quantum, pending, steps))
        notes = batch.step()
        h, c = batch.state
        return [(h[:, i].tobytes(), c[:, i].tobytes(), notes[i].tobytes()) for i in range(len(specs))]

    one = np.empty((0, 4), np.float32)
    samples = [(seed, seed % 5 + 1, one) for seed in range(24)]
    alone = {s[0]: outcome([s], 4)[0] for s in samples}
    rng = np.random.default_rng(0)
    unpadded_differ = 0
    for size in (2, 3, 5, 7, 9, 13, 24):
        chosen = [samples[i] for i in rng.permutation(len(samples))[:size]]
        assert outcome(chosen, 4) == [alone[s[0]] for s in chosen], f"padded batch of {size}"
        unpadded_differ += sum(a != alone[s[0]] for a, s in zip(outcome(chosen, 1), chosen))
    print(f"\nrows whose bits differ without padding: {unpadded_differ}")
    for length in (7, 30):  # rows feeding several notes (a session's appended notes) share a call too
        appended = [(100 + i, i % 3 + 1, seed_notes()[i:i + length]) for i in range(6)]
        alone = {s[0]: outcome([s], 4)[0] for s in appended}
        order = [appended[i] for i in rng.permutation(len(appended))]
        assert outcome(order, 4) == [alone[s[0]] for s in order], f"{length} appended notes"


def test_answers_as_midi_and_csv() -> None:
    async def test(client, app):
        midi = await client.post("/v1/generate", json={"notes": 32, "seed": 3, "format": "midi"})
        csv = await client.post("/v1/generate", json={"notes": 32, "seed": 3, "format": "csv"})
        whole = await client.post("/v1/generate", json={"notes": 32, "seed": 3})
        return midi, csv, notes_of(whole.json())
    midi, csv, notes = run_app(test)
    assert midi.headers["content-type"] == "audio/midi" and midi.content[:4] == b"MThd"
    assert midi.headers["x-mpx-seed"] == "3"
    from mpx.runtime import read_notes
    got = read_notes(midi.content)
    np.testing.assert_array_equal(got[:, [0, 3]], notes[:, [0, 3]])
    lines = csv.text.splitlines()
    assert lines[0] == "pitch,step,duration,velocity" and len(lines) == 33
    np.testing.assert_array_equal(np.loadtxt(lines[1:], delimiter=",", dtype=np.float32), notes)


def test_midi_upload_is_the_seed() -> None:
    from conftest import SEEDS_DIR
    path = sorted(SEEDS_DIR.glob("*.mid"))[0]

    async def test(client, app):
        response = await client.post("/v1/generate", files={"primer": (path.name, path.read_bytes(), "audio/midi")},
                                     data={"notes": "40", "seed": "9", "temperature": "[1, 0.9, 0.9, 1]"})
        assert response.status_code == 200, response.text
        return notes_of(response.json())
    from mpx.runtime import read_notes
    assert_same_notes(run_app(test), reference(read_notes(path), 9, 40, [1, 0.9, 0.9, 1]))


def test_server_sent_events() -> None:
    async def test(client, app):
        async with client.stream("POST", "/v1/generate", json={"notes": 50, "seed": 1, "stream": True},
                                 headers={"accept": "text/event-stream"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            return (await response.aread()).decode()
    text = run_app(test)
    events = [block for block in text.split("\n\n") if block]
    kinds = [block.split("\n")[0] for block in events]
    assert kinds[0] == "event: start" and kinds[-1] == "event: end" and set(kinds[1:-1]) == {"event: notes"}
    notes = np.concatenate([np.asarray(json.loads(b.split("data: ", 1)[1])["notes"], np.float32) for b in events[1:-1]])
    assert_same_notes(notes, reference(seed_notes(), 1, 50))


BAD = [
    ({"notes": 0}, 422, "notes: must be an integer 1..100,000, got 0"),
    ({"notes": 100_001}, 422, "notes: must be an integer 1..100,000"),
    ({"notes": "many"}, 422, "notes: Input should be a valid integer"),
    ({"top_p": 1.5}, 422, ("top_p must be", "(0, 1]", "got 1.5")),
    ({"temperature": [1, 2]}, 422, "temperature takes one number or 4"),
    ({"temperature": -1}, 422, ("temperature must be", "[0, 100]")),
    ({"seed": -1}, 422, "seed: must be an integer 0..2^64-1"),
    ({"seed": "abc"}, 422, "seed: must be an integer 0..2^64-1"),
    ({"seed": 2**64}, 422, "seed: must be an integer 0..2^64-1"),
    ({"volume": 3}, 422, "volume: unknown field"),
    ({"primer": [[60, 0.1, 0.2]]}, 200, ""),                       # no velocity: 100, as a v1 CSV
    ({"primer": [[60, 0.1]]}, 422, "primer: notes must have shape [N, 4]"),
    ({"primer": [[200, 0, 0.1, 80]]}, 422, "primer: pitch must be 0..127"),
    ({"primer": [[60, -1, 0.1, 80]]}, 422, "primer: step and duration must be >= 0"),
    ({"primer": []}, 422, "primer: holds no notes"),
    ({"primer": "notes"}, 422, "primer: Input should be a valid list"),
    ({"primer_notes": 5000}, 422, "primer_notes 5000: primer has only"),
    ({"format": "wav"}, 422, "format: Input should be 'json', 'midi' or 'csv'"),
    ({"format": "midi", "stream": True}, 422, "format: a stream sends notes as JSON lines"),
    ({"controls": {"density": 2.0}}, 422, "controls: the server does not take them yet"),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[json.dumps(b)[:40] for b, _, _ in BAD])
def test_bad_input_is_one_line_naming_the_field(body: dict, status: int, message: str) -> None:
    async def test(client, app):
        return await client.post("/v1/generate", json={"notes": 4, **body})
    response = run_app(test)
    assert response.status_code == status, response.text
    if status != 200:
        error = response.json()["error"]
        fragments = message if isinstance(message, tuple) else (message,)
        assert all(f in error for f in fragments) and "\n" not in error and "Traceback" not in response.text, error


def test_malformed_bodies() -> None:
    async def test(client, app):
        return [
            await client.post("/v1/generate", content=b"{notes: 3", headers={"content-type": "application/json"}),
            await client.post("/v1/generate", content=b"[1, 2]", headers={"content-type": "application/json"}),
            await client.post("/v1/generate", content=b"notes=3", headers={"content-type": "text/plain"}),
            await client.post("/v1/generate", files={"primer": ("x.mid", b"MThd\x00\x00\x00\x06garbage")}),
            await client.post("/v1/generate", files={"primer": ("x.mid", b"not midi at all")}),
            await client.post("/v1/generate", files={"primer": ("x.csv", b"pitch,step\n1,2,3,4,5\n")}),
            await client.post("/v1/generate", files={"other": ("x.mid", b"MThd")}),
            await client.post("/v1/generate", content=b"--xyz\r\ngarbage", headers={"content-type": "multipart/form-data"}),
            await client.get("/v1/generate"),
            await client.get("/nowhere"),
        ]
    answers = run_app(test)
    statuses = [a.status_code for a in answers]
    assert statuses == [400, 400, 415, 400, 400, 400, 422, 400, 405, 404], [a.text for a in answers]
    for a in answers:
        error = a.json()["error"]
        assert error and "\n" not in error and "Traceback" not in a.text
    assert "x.mid" in answers[3].json()["error"] and "not a MIDI file" in answers[4].json()["error"]


def test_limits_429_and_413() -> None:
    async def test(client, app):
        # one stream at a time, no queue: a second request while the first runs is turned away
        first = asyncio.ensure_future(client.post("/v1/generate", json={"notes": 100_000, "seed": 1}))
        while not app.state.service.batcher.active:
            await asyncio.sleep(0.01)
        busy = await client.post("/v1/generate", json={"notes": 4})
        first.cancel()
        big = await client.post("/v1/generate", content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"})
        return busy, big
    busy, big = run_app(test, max_streams=1, max_queue=0, max_body_bytes=4096)
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1", busy.text
    assert "try again" in busy.json()["error"]
    assert big.status_code == 413 and big.json()["error"].startswith("body: larger than the 4,096 bytes")


def test_token() -> None:
    async def test(client, app):
        return (await client.get("/healthz"), await client.get("/v1/model"),
                await client.post("/v1/generate", json={"notes": 2}, headers={"authorization": "Bearer wrong-token"}),
                await client.post("/v1/generate", json={"notes": 2}, headers={"authorization": "Bearer s3cret-token"}),
                await client.get("/metrics", headers={"authorization": "Bearer s3cret-token"}))
    health, model, wrong, right, metrics = run_app(test, token="s3cret-token")
    assert health.status_code == 200 and model.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200 and metrics.status_code == 200


def test_model_health_and_metrics() -> None:
    async def test(client, app):
        await client.post("/v1/generate", json={"notes": 20, "seed": 0})
        return (await client.get("/v1/model")).json(), (await client.get("/healthz")).json(), (await client.get("/metrics"))
    model, health, metrics = run_app(test)
    assert model["contract"] == 2 and model["spec"]["seq_len"] == 128 and model["limits"]["max_notes"] == 100_000
    assert model["limits"]["row_quantum"] == 4 and model["controls"] == []
    assert health == {"status": "ok", "streams": 0}
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    for name in ("mpx_active_streams", "mpx_queued_streams", "mpx_batch_rows_bucket", "mpx_queue_wait_seconds_count",
                 "mpx_time_to_first_note_seconds_bucket", "mpx_notes_per_second", "mpx_notes_total", "mpx_step_seconds_sum",
                 "mpx_sessions"):
        assert re.search(rf"^{name}\b", text, re.M), name
    assert re.search(r"^mpx_notes_total 20$", text, re.M)
    assert re.search(r'^mpx_requests_total\{endpoint="/v1/generate",status="200"\} 1$', text, re.M)
    for line in text.splitlines():  # every sample line: name{labels} value
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+|[a-z_]+(\{[^}]*\})? \+Inf', line), line


def test_a_slow_reader_holds_no_one_back_and_a_gone_one_is_freed() -> None:
    """The batcher alone: a stream nobody reads stops at buffer_notes (its row sits out the
    steps, its state kept) while another runs to the end; reading lets it go on; a cancelled
    stream leaves the batch at once."""
    from mpx.runtime import load
    from mpx.runtime.serve import ServeOptions
    from mpx.runtime.serve.batcher import Batcher
    from mpx.runtime.serve.metrics import Metrics
    from mpx.runtime.serve.rows import Listener
    gen = load(MODEL, threads=1)
    primer = seed_notes()[-128:]

    async def main():
        batcher = Batcher(gen.backend, ServeOptions(buffer_notes=16), Metrics())
        batcher.start()
        slow = batcher.submit(Listener(1, gen.spec.sampling, primer), 1000)
        gone = batcher.submit(Listener(2, gen.spec.sampling, primer), 1000)
        quick = await batcher.submit(Listener(3, gen.spec.sampling, primer), 300).collect()
        held = slow.made
        gone.cancel()
        await asyncio.sleep(0.1)
        rest = await slow.collect()
        left = batcher.streams()
        await batcher.stop()
        return quick, held, rest, left
    quick, held, rest, left = asyncio.run(main())
    assert len(quick) == 300 and held == 16, held
    np.testing.assert_array_equal(rest[:len(quick)], reference(seed_notes(), 1, 300))  # the paused row's notes are its own
    assert len(rest) == 1000 and left == 0


# -- interactive sessions -------------------------------------------------------------------------

def _session(app, messages: list[dict], **options):
    from starlette.testclient import TestClient
    replies = []
    with TestClient(app) as client, client.websocket_connect("/v1/session") as ws:
        for message in messages:
            ws.send_text(json.dumps(message))
            if message.get("type") == "close":
                break
            while True:
                reply = json.loads(ws.receive_text())
                replies.append(reply)
                if reply["type"] != "notes":
                    break
    return replies


def _app(**options):
    from mpx.runtime.serve import ServeOptions
    from mpx.runtime.serve.app import create_app
    return create_app(MODEL, ServeOptions(**options))


def _collect(replies: list[dict]) -> list[np.ndarray]:
    out, current = [], []
    for reply in replies:
        if reply["type"] == "notes":
            current.append(np.asarray(reply["notes"], np.float32))
        elif reply["type"] == "generated":
            out.append(np.concatenate(current))
            current = []
    return out


def test_session_continues_appends_and_follows_the_random_stream() -> None:
    """A session is `mpx run` cut into pieces: 50 notes then 30 more are the first 80 of one
    run (the random stream's counter carries on). Notes the client appends are fed with the
    note just made at the next call; the reference does exactly that with the graph."""
    played = [[60, 0.5, 0.4, 90], [64, 0.0, 0.4, 80], [67, 0.0, 0.4, 85]]
    replies = _session(_app(), [
        {"type": "open", "seed": 5, "exact": True}, {"type": "generate", "notes": 50},
        {"type": "generate", "notes": 30}, {"type": "append", "notes": played},
        {"type": "set", "temperature": 0.8}, {"type": "generate", "notes": 20}, {"type": "close"}])
    assert replies[0]["type"] == "opened" and replies[0]["seed"] == "5" and replies[0]["primer_notes"] == 128
    first, second, third = _collect(replies)
    whole = reference(seed_notes(), 5, 80)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    # the reference for the rest: the graph fed [last note + played] with the state carried
    from mpx.runtime import load
    from mpx.runtime.backends import zero_state
    from mpx.runtime.rng import uniforms
    gen = load(MODEL, threads=1)
    b, spec = gen.backend, gen.spec
    t, p = np.array(spec.sampling.temperature, np.float32), np.array(spec.sampling.top_p, np.float32)
    h, c = zero_state(spec, 1)
    x = seed_notes()[-128:][None]
    for n in range(80):
        out = b.call(x, h, c, uniforms(5, 1, n, 1)[0], t, p)
        h, c, x = out.hn, out.cn, out.next_note[:, None]
    x = np.concatenate([x[0], np.asarray(played, np.float32)])[None]
    t = np.full(4, 0.8, np.float32)
    want = []
    for n in range(80, 100):
        out = b.call(x, h, c, uniforms(5, 1, n, 1)[0], t, p)
        h, c, x = out.hn, out.cn, out.next_note[:, None]
        want.append(out.next_note[0])
    np.testing.assert_array_equal(third, np.array(want))
    assert replies[-1]["type"] == "generated" and replies[-1]["drawn"] == 100


def test_session_errors_keep_the_session() -> None:
    replies = _session(_app(), [
        {"type": "generate", "notes": 5}, {"type": "dance"}, {"type": "open", "primer": []},
        {"type": "generate", "notes": 5}, {"type": "append", "notes": [[300, 0, 0, 1]]},
        {"type": "append", "notes": [[60, 0, 0.5, 70]]}, {"type": "generate", "notes": 0},
        {"type": "generate", "notes": 3}])
    kinds = [r["type"] for r in replies if r["type"] != "notes"]
    assert kinds == ["error", "error", "opened", "error", "error", "appended", "error", "generated"], replies
    errors = [r["error"] for r in replies if r["type"] == "error"]
    assert errors[0].startswith("type: open the session first") and errors[1].startswith("type: must be one of")
    assert "append notes first" in errors[2] and "pitch must be 0..127" in errors[3] and errors[4].startswith("notes: must be")


def test_idle_sessions_expire_and_the_count_is_limited() -> None:
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect
    app = _app(session_ttl=0.3, max_sessions=1)
    with TestClient(app) as client:
        with client.websocket_connect("/v1/session") as ws:
            ws.send_text(json.dumps({"type": "open"}))
            assert json.loads(ws.receive_text())["type"] == "opened"
            with client.websocket_connect("/v1/session") as second:
                with pytest.raises(WebSocketDisconnect) as full:
                    second.receive_text()
            assert full.value.code == 1013
            with pytest.raises(WebSocketDisconnect) as idle:
                ws.receive_text()
            assert idle.value.code == 4408
        assert app.state.service.sessions == {}


def test_the_runtime_does_not_import_the_server_and_the_server_not_torch(tmp_path) -> None:
    from conftest import torch_blocked
    code = ("import sys, mpx.runtime; assert 'mpx.runtime.serve' not in sys.modules and 'fastapi' not in sys.modules; "
            "from mpx.runtime.serve.app import create_app; app = create_app(); "
            "assert 'torch' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__('os').environ, **torch_blocked(tmp_path)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_options_are_checked_in_one_place() -> None:
    from mpx.runtime.errors import OptionsError
    from mpx.runtime.serve import ServeOptions
    for bad, message in (({"port": 70000}, "--port must be an integer 0..65,535"), ({"max_batch": 0}, "--max-batch"),
                         ({"flush_interval": -1}, "--flush-interval"), ({"token": "short"}, "--token must be at least 8")):
        with pytest.raises(OptionsError, match=re.escape(message)):
            ServeOptions(**bad)
    assert ServeOptions().exposure_warning() is None
    assert "without --token" in ServeOptions(host="0.0.0.0").exposure_warning()
    assert ServeOptions(host="0.0.0.0", token="long-enough").exposure_warning() is None


def test_openapi_documentation_is_served() -> None:
    async def test(client, app):
        return (await client.get("/openapi.json")).json(), (await client.get("/docs")).status_code
    spec, docs = run_app(test)
    assert docs == 200 and {"/v1/generate", "/v1/model", "/healthz", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/v1/generate"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert {"notes", "seed", "temperature", "top_p", "controls", "stream", "exact"} <= set(body["application/json"]["schema"]["properties"])

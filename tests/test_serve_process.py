"""`mpx serve` as a real process on uvicorn: what a deployment sees (signals, the bind
warning, a live HTTP stream); the load and soak runs are benchmarks/bench_serve.py's."""
from __future__ import annotations

import json
import signal
import socket
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx  # noqa: E402

from serve_helpers import free_port, reference, seed_notes, server_process  # noqa: E402
from deploy import assert_same_notes  # noqa: E402


def test_sigterm_lets_the_streams_in_flight_finish_then_exits_0() -> None:
    with server_process() as (proc, url):
        with httpx.Client(base_url=url, timeout=60) as client:
            with client.stream("POST", "/v1/generate", json={"notes": 4000, "seed": 4, "stream": True}) as response:
                lines = response.iter_lines()
                first = json.loads(next(lines))
                proc.send_signal(signal.SIGTERM)
                events = [first] + [json.loads(line) for line in lines if line]
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):  # no new connections once draining
            httpx.get(url + "/healthz", timeout=5)
        assert proc.wait(timeout=30) == 0
    assert events[-1] == {"event": "end", "count": 4000, "seed": "4"}
    notes = np.concatenate([np.asarray(e["notes"], np.float32) for e in events if e["event"] == "notes"])
    assert_same_notes(notes, reference(seed_notes(), 4, 4000))
    assert "Traceback" not in proc.log_text and "Error" not in proc.log_text, proc.log_text


def test_bound_beyond_this_machine_without_a_token_warns() -> None:
    port = free_port()
    with server_process("--host", "0.0.0.0", port=port) as (proc, url):
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    assert f"warning: serving on 0.0.0.0:{port} without --token" in proc.log_text
    with server_process("--host", "0.0.0.0", env={"MPX_SERVE_TOKEN": "a-long-token"}) as (proc, url):
        assert httpx.get(url + "/v1/model", timeout=5).status_code == 401
        assert httpx.get(url + "/v1/model", headers={"authorization": "Bearer a-long-token"}, timeout=5).status_code == 200
    assert "warning" not in proc.log_text


def test_a_client_that_stops_reading_or_sends_garbage_costs_nothing() -> None:
    """A raw socket that asks for a long stream and never reads, and one that sends bytes that
    are no HTTP: another client is served in full meanwhile, the unread stream's row stops at
    its buffer, and both are freed when their sockets close."""
    with server_process() as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"notes": 100_000, "seed": 1, "stream": True}).encode()
        silent = socket.create_connection(("127.0.0.1", port))
        silent.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        garbage = socket.create_connection(("127.0.0.1", port))
        garbage.sendall(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")
        with httpx.Client(base_url=url, timeout=60) as client:
            response = client.post("/v1/generate", json={"notes": 2000, "seed": 2})
            assert response.status_code == 200 and len(response.json()["notes"]) == 2000
            time.sleep(1.0)
            held = _metric(client.get("/metrics").text, "mpx_buffered_notes")
            assert held <= 256, held
            silent.close()
            garbage.close()
            for _ in range(100):
                if _metric(client.get("/metrics").text, "mpx_active_streams") == 0:
                    break
                time.sleep(0.1)
            assert _metric(client.get("/metrics").text, "mpx_active_streams") == 0
            assert client.get("/healthz").json()["status"] == "ok"
    assert "Traceback" not in proc.log_text, proc.log_text


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
def test_load_benchmark_smoke(tmp_path) -> None:
    """benchmarks/bench_serve.py end to end, small: both servers, the ceiling, a short soak."""
    import subprocess
    import sys
    from conftest import ROOT
    out = tmp_path / "serve.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--clients", "1", "8",
                           "--notes", "48", "--soak", "4", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    servers = [r for r in result["rows"] if "errors" in r]
    assert len(servers) == 4 and all(r["errors"] == 0 and r["active_after"] == 0 for r in servers), servers
    assert result["server_exit_codes"] == [0, 0]
    assert result["batched_vs_unbatched_streams_differing"] == 0
    soak = result["soak"]
    assert soak["server_up"] and soak["active_after"] == 0 and soak["buffered_after"] == 0
    assert soak["tracebacks"] == 0 and soak["exit_code"] == 0 and soak["normal_ok"] == soak["normal"]


def test_a_client_that_hangs_up_on_a_long_answer_frees_its_row() -> None:
    with server_process() as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"notes": 100_000, "seed": 5}).encode()
        gone = socket.create_connection(("127.0.0.1", port))
        gone.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(100):
                if _metric(client.get("/metrics").text, "mpx_active_streams") == 1:
                    break
                time.sleep(0.05)
            gone.close()
            for _ in range(60):
                time.sleep(0.1)
                if _metric(client.get("/metrics").text, "mpx_active_streams") == 0:
                    break
            assert _metric(client.get("/metrics").text, "mpx_active_streams") == 0
            assert 'mpx_streams_total{outcome="cancelled"} 1' in client.get("/metrics").text
    assert "Traceback" not in proc.log_text, proc.log_text

"""Shared by the server's tests: the app in this process (httpx on its ASGI interface), a real
`mpx serve` process on a free port, and the reference notes (`mpx run`'s, one graph call per
note at B = 1, as tests/deploy.py holds every consumer to)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from conftest import ARTIFACTS, ROOT

MODEL = ARTIFACTS / "music_producter.onnx"
SEED_MIDI = ARTIFACTS / "seed.mid"


def run_app(test: Callable[[Any, Any], Awaitable[Any]], **options: Any) -> Any:
    """Run `test(client, app)` against a fresh app (its lifespan running) in a new event loop."""
    import httpx
    from mpx.runtime.serve import ServeOptions
    from mpx.runtime.serve.app import create_app

    async def main() -> Any:
        app = create_app(MODEL, ServeOptions(**options))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mpx.test", timeout=120) as client:
                return await test(client, app)

    return asyncio.run(main())


def notes_of(answer: Any) -> np.ndarray:
    return np.asarray(answer["notes"], dtype=np.float32).reshape(-1, 4)


async def stream_notes(client: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[list[dict], np.ndarray]:
    """POST a streaming request; (its events, the notes in order)."""
    events = []
    async with client.stream("POST", "/v1/generate", json={**body, "stream": True}, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.strip():
                events.append(json.loads(line))
    notes = [np.asarray(e["notes"], np.float32).reshape(-1, 4) for e in events if e["event"] == "notes"]
    return events, (np.concatenate(notes) if notes else np.empty((0, 4), np.float32))


_generators: dict[int, Any] = {}


def reference(primer: np.ndarray, seed: int, n: int, temperature: Any = None, top_p: Any = None,
              controls: dict[str, Any] | None = None, key: str | None = None) -> np.ndarray:
    """`mpx run`'s notes: the Generator with the same GenerationOptions, one call per note at B = 1."""
    from mpx.runtime import load
    gen = _generators.setdefault(0, load(MODEL, threads=1))
    t = None if temperature is None else tuple(np.atleast_1d(np.asarray(temperature, float)))
    p = None if top_p is None else tuple(np.atleast_1d(np.asarray(top_p, float)))
    return gen.generate(primer, n, seed=seed, temperature=t, top_p=p, controls=controls, key=key)


def seed_notes() -> np.ndarray:
    from mpx.runtime import read_notes
    return read_notes(SEED_MIDI)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(*args: str, env: dict[str, str] | None = None, port: int | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """`mpx serve` in its own process; (the process, its base URL). Ends it (SIGTERM) after."""
    port = port or free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"mpx-serve-{port}.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "mpx", "serve", "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        proc.log_text = log.read()  # type: ignore[attr-defined]
        log.close()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mpx serve exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError("mpx serve was not ready in time")

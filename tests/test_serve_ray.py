"""The server on Ray Serve: a local Ray instance (2 CPUs, small object store) with 2 replicas
gives the one-process server's notes, spreads requests over both replicas, and keeps every
message of a session on the replica that holds it."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]
pytest.importorskip("ray.serve", reason="the ray extra is not installed: pip install '.[ray]'")

from serve_helpers import MODEL, free_port, notes_of, run_app  # noqa: E402

REQUESTS = [{"notes": 40 + 7 * i, "seed": 500 + i, **({"temperature": 0.8} if i % 2 else {})} for i in range(16)]
SESSION = [{"type": "open", "seed": 77}, {"type": "generate", "notes": 30}, {"type": "append", "notes": [[60, 0.3, 0.5, 70]]},
           {"type": "generate", "notes": 30}]


@pytest.fixture(scope="module")
def ray_url():
    import ray
    from ray import serve
    from mpx.runtime.serve.ray_app import build_app
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False,
             configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(MODEL, replicas=2), name="mpx", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def local_answers() -> tuple[list[np.ndarray], list[dict]]:
    async def test(client, app):
        return [notes_of((await client.post("/v1/generate", json=body)).json()) for body in REQUESTS]
    from starlette.testclient import TestClient
    from mpx.runtime.serve.app import create_app
    with TestClient(create_app(MODEL)) as client, client.websocket_connect("/v1/session") as ws:
        replies = _talk(ws.send_text, ws.receive_text)
    return run_app(test), replies


def _talk(send, receive) -> list[dict]:
    replies = []
    for message in SESSION:
        send(json.dumps(message))
        while True:
            reply = json.loads(receive())
            replies.append(reply)
            if reply["type"] != "notes":
                break
    return replies


async def _spread(url: str) -> set[str]:
    import httpx
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        answers = await asyncio.gather(*(client.post("/v1/generate", json={"notes": 2000, "seed": i}) for i in range(24)))
    return {a.headers["x-mpx-replica"] for a in answers if a.status_code == 200}


def test_two_replicas_give_the_one_process_servers_notes(ray_url: str) -> None:
    import httpx
    import websockets.sync.client as wsclient

    async def remote():
        async with httpx.AsyncClient(base_url=ray_url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/generate", json=body) for body in REQUESTS))
    answers = asyncio.run(remote())
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    replicas = {a.headers["x-mpx-replica"] for a in answers}
    for _ in range(5):  # Ray's router picks the less busy of two replicas: overlapping requests spread
        if len(replicas) == 2:
            break
        replicas |= asyncio.run(_spread(ray_url))
    with wsclient.connect(ray_url.replace("http", "ws") + "/v1/session") as ws:
        replies = _talk(ws.send, ws.recv)
    local, local_replies = local_answers()
    for answer, want in zip(answers, local):
        np.testing.assert_array_equal(notes_of(answer.json()), want)
    assert len(replicas) == 2, f"every request went to {replicas}"
    assert replies[0]["replica"] in replicas
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("session", "replica")} for r in rs]  # noqa: E731
    assert strip(replies) == strip(local_replies)

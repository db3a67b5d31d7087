"""The HTTP and WebSocket application (FastAPI on any ASGI server; `mpx serve` runs uvicorn).

    POST /v1/generate   seed + options -> notes (JSON, MIDI, CSV), or a stream of notes
    WS   /v1/session    interactive: open, append what you played, generate N more, ...
    GET  /v1/model      the model's spec and this server's limits
    GET  /healthz       ok / draining
    GET  /metrics       Prometheus text: streams, batch sizes, queue wait, notes/s, latencies
    GET  /docs          the OpenAPI documentation (FastAPI's)

Every fault a client can cause is answered with a 4xx and one line naming the field
(`{"error": "notes: must be an integer 1..100,000, got 0"}`); nothing a client sends puts a
traceback in a response or a log line.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from .. import controls as control_rules
from ..artifacts import bundled_dir, SEED
from ..backends import Backend
from ..formats import open_backend
from ..contract import CONTRACT_VERSION
from ..errors import MpxError
from ..generate import Generator
from ..midi import read_notes
from . import encode, requests as rq
from .batcher import Batcher, Busy, Draining, Stream
from .metrics import CONTENT_TYPE, Metrics
from .options import ServeOptions
from .rows import Listener as Row

log = logging.getLogger("mpx.serve")


class Service:
    """What the routes share: the model, the batcher, the metrics, the open sessions."""

    def __init__(self, backend: Backend, options: ServeOptions, default_primer: np.ndarray) -> None:
        self.backend, self.options = backend, options
        self.generator = Generator(backend)
        self.metrics = Metrics()
        self.batcher = Batcher(backend, options, self.metrics)
        self.default_primer = default_primer
        self.sessions: dict[str, Row] = {}
        self.replica: str | None = None
        self.metrics.gauge("mpx_sessions", "open interactive sessions", lambda: len(self.sessions))

    def model_info(self) -> dict[str, Any]:
        o = self.options
        return {"file": self.backend.path.name, "backend": self.backend.name,
                "contract": CONTRACT_VERSION, "controls": controls_info(), "spec": self.backend.spec.to_dict(),
                "default_primer_notes": int(len(self.default_primer)),
                "limits": {"max_streams": o.max_streams, "max_queue": o.max_queue, "max_notes": o.max_notes,
                           "max_primer_notes": o.max_primer_notes, "max_body_bytes": o.max_body_bytes,
                           "max_sessions": o.max_sessions, "session_ttl": o.session_ttl,
                           "max_batch": o.max_batch, "row_quantum": o.row_quantum}}


def controls_info() -> dict[str, Any]:
    """The controls a request may set (runtime/controls.describe: names, units, ranges, ...),
    by name, and how a key is written."""
    d = control_rules.describe()
    return {"names": d["names"],
            "controls": {name: {"unit": unit, "range": rng, "typical": list(control_rules.TYPICAL[name])}
                         for name, unit, rng in zip(d["names"], d["units"], d["ranges"])},
            "families": [list(f) for f in control_rules.FAMILIES], "held_by_default": list(control_rules.HELD),
            "window": d["window"], "min_notes": d["min_notes"], "not_given": d["not_given"],
            "key": "a tonic A-G, optionally # or b, then major or minor ('D minor', 'F# major', 'Bb'): "
                   "sets pc0..pc11",
            "default": "the primer's summaries (its last `window` notes) for the controls held by default; "
                       "a control given releases the others of its family"}


def default_seed_notes(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    return read_notes(path if path is not None else bundled_dir() / SEED)


def create_app(model: str | os.PathLike[str] | Backend | None = None, options: ServeOptions | None = None,
               seed_file: str | os.PathLike[str] | None = None, replica: str | None = None) -> FastAPI:
    """The ASGI app serving `model` (a path or an opened backend; default: the bundled ONNX).
    `replica` names this copy of the app (Ray Serve): answers carry it as X-Mpx-Replica."""
    options = options or ServeOptions()
    if model is None or isinstance(model, (str, os.PathLike)):
        from ..artifacts import bundled
        model = open_backend(model if model is not None else bundled("onnx"), None, options.threads)
    service = Service(model, options, default_seed_notes(seed_file))
    service.replica = replica

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="mpx", version=_version(), lifespan=lifespan,
                  description="Piano continuations from a next-note LSTM, many listeners batched into one graph call.")
    app.state.service = service
    _routes(app, service)
    _error_handlers(app)
    app.add_middleware(_Guard, service=service)
    # Outside the guard, so that a browser's preflight needs no token. Pages served from this
    # machine (the example page on another port) may call; other origins only when listed.
    from fastapi.middleware.cors import CORSMiddleware
    app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins), allow_origin_regex=LOCAL_ORIGINS,
                       allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"],
                       expose_headers=["x-mpx-seed", "x-mpx-replica", "retry-after"])
    return app


LOCAL_ORIGINS = r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?"


def _error_handlers(app: FastAPI) -> None:
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: f"path: {request.url.path} is not an endpoint (see /docs)",
                   405: f"method: {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message, getattr(exc, "headers", None))


def _version() -> str:
    from mpx import __version__
    return __version__


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _routes(app: FastAPI, service: Service) -> None:
    options = service.options

    @app.get("/healthz", summary="Liveness: ok, or draining during shutdown")
    async def healthz() -> JSONResponse:
        if service.batcher.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "streams": service.batcher.streams()})

    @app.get("/v1/model", summary="The model's spec and this server's limits")
    async def model() -> JSONResponse:
        return JSONResponse(service.model_info())

    @app.get("/metrics", summary="Prometheus metrics (text format 0.0.4)")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/generate", summary="Continue a seed: notes as JSON, MIDI or CSV, or streamed as they are made",
              openapi_extra={"requestBody": {"required": False, "content": {
                  "application/json": {"schema": rq.GenerateRequest.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "primer": {"type": "string", "format": "binary", "description": "a MIDI file or CSV notes"},
                      "notes": {"type": "integer"}, "seed": {"type": "string"}, "temperature": {"type": "string"},
                      "top_p": {"type": "string"}, "controls": {"type": "string", "description": "JSON: " + rq.CONTROLS_HELP},
                      "key": {"type": "string", "description": rq.KEY_HELP},
                      "format": {"type": "string"}, "stream": {"type": "boolean"}}}}}}})
    async def generate(request: Request) -> Response:
        raw, uploaded = await _request_fields(request, options)
        job = rq.job_of(rq.parse(rq.GenerateRequest, raw), service.generator, service.default_primer,
                        options, uploaded)
        row = Row(job.seed, job.sampling, job.primer, exact=job.exact, requested=job.controls)
        stream = service.batcher.submit(row, job.notes)
        head = {"seed": str(job.seed), "count": job.notes, "primer_notes": int(len(job.primer)),
                "sampling": job.sampling.to_dict(), "controls": rq.controls_dict(row.controls)}
        if job.stream:
            sse = "text/event-stream" in request.headers.get("accept", "")
            return StreamingResponse(_stream_body(stream, head, sse, service.batcher),
                                     media_type="text/event-stream" if sse else "application/x-ndjson",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        notes = await _collect_while_connected(request, stream)
        if notes is None:  # the client hung up: nobody reads this answer
            return Response(status_code=499)
        if job.format == "midi":
            return Response(encode.midi_bytes(notes), media_type="audio/midi",
                            headers={"X-Mpx-Seed": str(job.seed)})
        if job.format == "csv":
            return Response(encode.csv_text(notes), media_type="text/csv", headers={"X-Mpx-Seed": str(job.seed)})
        return Response(encode.document(head, notes), media_type="application/json")

    @app.websocket("/v1/session")
    async def session(websocket: WebSocket) -> None:
        try:
            await _session(websocket, service)
        except Exception as exc:  # a bug: one line in the log, the socket closed with 1011
            log.error("session: internal error (%s: %s)", type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            with contextlib.suppress(Exception):
                await websocket.close(code=1011, reason="internal error")


async def _collect_while_connected(request: Request, stream: Stream) -> np.ndarray | None:
    """All of a stream's notes; None when the client hangs up meanwhile (its row is freed at once)."""
    task = asyncio.ensure_future(stream.collect())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                return None
    finally:
        task.cancel()
        stream.cancel()


async def _request_fields(request: Request, options: ServeOptions) -> tuple[Any, np.ndarray | None]:
    """The request as a dict, and the uploaded seed notes (multipart), if any."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _form_fields(request)
    body = await request.body()
    if not body:
        return {}, None
    if kind not in ("application/json", ""):
        raise rq.InputError(f"content-type: {kind} is not taken; send application/json or multipart/form-data", 415)
    raw = rq.parse_json(body)
    if not isinstance(raw, dict):
        raise rq.InputError("body: must be a JSON object", 400)
    return raw, None


async def _form_fields(request: Request) -> tuple[dict[str, Any], np.ndarray | None]:
    try:
        form = await request.form(max_files=1, max_fields=32)
    except _TooLarge:
        raise
    except Exception as exc:  # the multipart parser's own error types
        raise rq.InputError(f"body: not a readable multipart form ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})", 400) from None
    raw: dict[str, Any] = {}
    uploaded = None
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            if key != "primer":
                raise rq.InputError(f"{key}: unknown file field (send the seed as `primer`)", 422)
            uploaded = rq.notes_of_file(await value.read(), value.filename or "upload")
        else:
            raw[key] = _form_value(value)
    return raw, uploaded


def _form_value(text: str) -> Any:
    """A form field as the JSON value it spells (0.9, [1,0.9,0.9,1], true), else the text."""
    import json
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _stream_body(stream: Stream, head: dict[str, Any], sse: bool, batcher: Batcher) -> AsyncIterator[str]:
    """The notes as they are made; at most one write per flush interval, the first at once."""
    index = 0
    try:
        yield encode.event("start", head, sse)
        while (notes := await stream.read()) is not None:
            yield encode.event("notes", {"index": index}, sse, notes=notes)
            index += len(notes)
            await asyncio.sleep(batcher.flush_interval())
        yield encode.event("end", {"count": index, "seed": head["seed"]}, sse)
    except MpxError as exc:
        yield encode.event("error", {"error": str(exc), "count": index}, sse)
    finally:
        stream.cancel()


# -- interactive sessions ------------------------------------------------------------------------

class _SessionError(Exception):
    pass


async def _session(ws: WebSocket, service: Service) -> None:
    """One WebSocket, one session: the row (state, pending notes, random stream) lives here and
    is freed when the socket closes or idles past session_ttl."""
    options = service.options
    if not _authorised(ws.headers, options):
        await ws.close(code=1008, reason="missing or wrong token")
        return
    if len(service.sessions) >= options.max_sessions or service.batcher.draining:
        await ws.accept()
        await ws.close(code=1013, reason="too many sessions; try again later")
        return
    await ws.accept()
    key = uuid.uuid4().hex
    row: Row | None = None
    service.sessions[key] = None  # type: ignore[assignment]
    try:
        while True:
            try:
                text = await asyncio.wait_for(ws.receive_text(), timeout=options.session_ttl)
            except asyncio.TimeoutError:
                await ws.close(code=4408, reason=f"session idle for {options.session_ttl:g} s; closed")
                return
            try:
                row = await _session_message(ws, service, key, row, text)
            except (MpxError, _SessionError) as exc:
                await ws.send_json({"type": "error", "error": str(exc)})
            if row is _CLOSED:
                await ws.close(code=1000)
                return
    except (WebSocketDisconnect, RuntimeError):  # the client went away (RuntimeError: sent after close)
        return
    finally:
        service.sessions.pop(key, None)


_CLOSED: Any = object()


async def _session_message(ws: WebSocket, service: Service, key: str, row: Row | None, text: str) -> Row | None:
    raw = rq.parse_json(text.encode())
    if not isinstance(raw, dict) or raw.get("type") not in rq.SESSION_MESSAGES:
        raise _SessionError(f"type: must be one of {', '.join(rq.SESSION_MESSAGES)}")
    message = rq.parse(rq.SESSION_MESSAGES[raw["type"]], raw)
    if message.type == "close":
        return _CLOSED
    if message.type == "open":
        return await _open(ws, service, key, message)
    if row is None:
        raise _SessionError("type: open the session first ({\"type\": \"open\", ...})")
    if message.type == "append":
        row.append(rq.appended_notes(message.notes, row.pending, service.options))
        await ws.send_json({"type": "appended", "pending": row.pending})
    elif message.type == "set":
        sampling = rq.sampling_of(message, service.generator, row.sampling)
        requested = rq.requested_of(message) if rq.gives_controls(message) else None
        row.set_sampling(sampling)
        if requested is not None:  # the others held at the summaries of the stream's last notes
            row.set_controls(requested)
        await ws.send_json({"type": "set", "sampling": row.sampling.to_dict(), "controls": rq.controls_dict(row.controls)})
    else:
        rq.check_count("notes", message.notes, service.options.max_notes)
        if not row.pending:
            raise _SessionError("notes: nothing to continue; append notes first")
        stream = service.batcher.submit(row, message.notes)
        index = 0
        try:
            while (notes := await stream.read()) is not None:
                await ws.send_text(encode.document({"type": "notes", "index": index}, notes))
                index += len(notes)
        finally:
            stream.cancel()
        await ws.send_json({"type": "generated", "count": index, "drawn": row.drawn})
    return row


async def _open(ws: WebSocket, service: Service, key: str, message: rq.SessionOpen) -> Row:
    notes = message.primer if message.primer is not None else service.default_primer
    primer = rq.primer_of(notes, service.generator, message.primer_notes, service.options) if len(notes) \
        else np.empty((0, 4), np.float32)
    seed = rq.seed_of(message.seed)
    if seed is None:
        import secrets
        seed = secrets.randbelow(2**64)
    row = Row(seed, rq.sampling_of(message, service.generator), primer, exact=message.exact,
              requested=rq.requested_of(message))
    service.sessions[key] = row
    await ws.send_json({"type": "opened", "session": key, "seed": str(seed), "primer_notes": int(len(primer)),
                        "sampling": row.sampling.to_dict(), "controls": rq.controls_dict(row.controls),
                        "replica": service.replica})
    return row


# -- the guard: auth, body size, errors as one line ----------------------------------------------

class _TooLarge(Exception):
    pass


def _authorised(headers: Any, options: ServeOptions) -> bool:
    if not options.token:
        return True
    given = headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {options.token}".encode())


class _Guard:
    """Outermost: refuse unauthorised requests and bodies over the limit, and turn every error
    into a one-line JSON answer (never a traceback in a response or in the server's log)."""

    OPEN = ("/healthz", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        options = self.service.options
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if self.service.replica:
                    message["headers"] = [*message.get("headers", []), (b"x-mpx-replica", self.service.replica.encode())]
                self.service.metrics.inc("mpx_requests_total", endpoint=_endpoint(path), status=str(message["status"]))
            await send(message)

        async def answer(response: Response) -> None:
            if not started:
                await response(scope, receive, sending)

        if path not in self.OPEN and not _authorised(headers, options):
            await answer(error(401, "authorization: missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}))
            return
        length = headers.get("content-length")
        limit = options.max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            await answer(error(413, f"body: larger than the {limit:,} bytes this server takes"))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, sending)
        except _TooLarge:
            await answer(error(413, f"body: larger than the {limit:,} bytes this server takes"))
        except rq.InputError as exc:
            await answer(error(exc.status, str(exc)))
        except Busy as exc:
            await answer(error(429, str(exc), {"Retry-After": str(exc.retry_after)}))
        except Draining as exc:
            await answer(error(503, str(exc), {"Retry-After": "5"}))
        except MpxError as exc:
            await answer(error(422, rq.field_message(exc)))
        except Exception as exc:  # a bug: one line in the log, one line to the client
            log.error("%s %s: internal error (%s: %s)", scope.get("method"), path, type(exc).__name__,
                      str(exc).splitlines()[0][:200] if str(exc) else "")
            await answer(error(500, "internal error; the server's log has one line about it"))


def _endpoint(path: str) -> str:
    known = ("/v1/generate", "/v1/model", "/healthz", "/metrics", "/v1/session", "/docs", "/openapi.json")
    return path if path in known else "other"

"""Serve the mpx web page on 127.0.0.1 with the standard library's http.server.

    python examples/web/serve.py [--port 8000] [--model artifacts/music_producter.onnx] [--seed artifacts/seed.mid]

URL layout: / is this folder (index.html, app.js, mpx.js ...), /node_modules/ is the npm
packages that `make web-deps` installs beside it (examples/node_modules), /model.onnx and
/seed.mid are the two files given, and /files.json names them for the page.

A path no file answers is a 404, a path no file could have (a NUL byte, control characters,
bytes that are not UTF-8) a 400: never a traceback or a dropped connection. A connection that
sends nothing for IDLE_SECONDS is closed, so idle connections hold no thread.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_MODEL = REPO / "artifacts" / "music_producter.onnx"
DEFAULT_SEED = REPO / "artifacts" / "seed.mid"
# Browsers refuse ES modules and compiled wasm served with the wrong type; older Pythons lack these.
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".mid": "audio/midi", ".json": "application/json"}


IDLE_SECONDS = 10  # a connection silent this long is closed (the socket's timeout)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from the page's folder, plus the routes above; nothing outside them."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}
    timeout = IDLE_SECONDS  # StreamRequestHandler sets it on the socket: an idle reader times out

    def __init__(self, *args, files: dict[str, Path], node_modules: Path, **kwargs):
        self.files = files
        self.node_modules = node_modules
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        route = unquote(urlsplit(path).path, errors="strict")
        if route in self.files:
            return str(self.files[route])
        if route.startswith("/node_modules/"):
            return str(_inside(self.node_modules, route.removeprefix("/node_modules")))
        return super().translate_path(path)

    def do_GET(self) -> None:
        if not _possible(self.path):
            self.send_error(400, "Bad request path")
            return
        try:
            self._get()
        except ConnectionError:  # the client left: nothing to answer
            self.close_connection = True
        except (OSError, ValueError):  # a path the file system refuses: nothing is there
            self.send_error(404, "File not found")

    def do_HEAD(self) -> None:
        if not _possible(self.path):
            self.send_error(400, "Bad request path")
            return
        try:
            super().do_HEAD()
        except ConnectionError:
            self.close_connection = True
        except (OSError, ValueError):
            self.send_error(404, "File not found")

    def _get(self) -> None:
        if urlsplit(self.path).path == "/files.json":
            body = json.dumps({"model": self.files["/model.onnx"].name, "seed": self.files["/seed.mid"].name}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def end_headers(self) -> None:
        # The page and the model change while developing; a stale cached module is confusing.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: a page load is ~15 requests


class Server(http.server.ThreadingHTTPServer):
    """One thread per connection while it is served (IDLE_SECONDS at most when silent); what a
    connection's thread fails on is one line on stderr, not a traceback."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:  # type: ignore[override]
        error = sys.exc_info()[1]
        print(f"serve.py: {client_address[0]}: {type(error).__name__}: {error}", file=sys.stderr)


def _possible(path: str) -> bool:
    """Whether a request path could name a file: UTF-8 once unquoted, no NUL or control
    characters (os functions raise on a NUL byte; no file of the page has the others)."""
    try:
        route = unquote(urlsplit(path).path, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return False
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in route)


def _inside(root: Path, route: str) -> Path:
    """root joined with the URL path, with '..' and empty parts dropped (as http.server does)."""
    parts = [p for p in route.split("/") if p not in ("", ".", "..")]
    return root.joinpath(*parts)


def make_server(directory: str | Path = HERE, port: int = 8000, model: str | Path = DEFAULT_MODEL,
                seed: str | Path = DEFAULT_SEED, node_modules: str | Path | None = None,
                ) -> Server:
    """A server bound to 127.0.0.1:port (0 = any free port), not yet serving.

    Raises FileNotFoundError naming what is missing (and how to get it).
    """
    directory = Path(directory).resolve()
    node_modules = Path(node_modules) if node_modules else directory.parent / "node_modules"
    for path, what in ((directory / "index.html", "page"), (Path(model), "model"), (Path(seed), "seed")):
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path} not found")
    if not (node_modules / "onnxruntime-web").is_dir():
        raise FileNotFoundError(f"{node_modules}/onnxruntime-web not found: run `make web-deps`")
    handler = functools.partial(Handler, directory=str(directory), node_modules=node_modules.resolve(),
                                files={"/model.onnx": Path(model).resolve(), "/seed.mid": Path(seed).resolve()})
    return Server(("127.0.0.1", port), handler)


def serve(directory: str | Path = HERE, port: int = 8000, model: str | Path = DEFAULT_MODEL,
          seed: str | Path = DEFAULT_SEED) -> None:
    """Serve the page until Ctrl-C."""
    server = make_server(directory, port, model, seed)
    host, bound = server.server_address[:2]
    print(f"mpx web page on http://{host}:{bound}/  (model {model}, seed {seed}; Ctrl-C stops)", flush=True)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the mpx web page on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="contract-v2 ONNX artifact")
    parser.add_argument("--seed", default=str(DEFAULT_SEED), help="the bundled seed MIDI file")
    parser.add_argument("--directory", default=str(HERE), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        serve(args.directory, args.port, args.model, args.seed)
    except FileNotFoundError as exc:
        print(f"serve.py: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, or not ours to bind
        print(f"serve.py: cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

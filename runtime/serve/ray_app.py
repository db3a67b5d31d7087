"""The same app and batcher as Ray Serve deployments (pip install '.[ray]').

    mpx serve --ray --replicas 2                      # a local Ray instance, or the cluster of RAY_ADDRESS
    serve run mpx.runtime.serve.ray_app:app_builder replicas=4 model=/models/music_producter.onnx

Each replica is one `mpx serve` app (its own continuous batcher and sessions) behind Ray
Serve's HTTP proxy, which spreads requests over the replicas. A session is a WebSocket, and a
WebSocket lives on the one replica that accepted it: every message of a session reaches the
replica that holds its state, and the state is freed when the socket closes or idles out.
Answers carry `X-Mpx-Replica` (and a session's `opened` message `replica`), so a client or a
test can see where it was served.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from .options import ServeOptions
from .server import require

log = logging.getLogger("mpx.serve")
DEPLOYMENT = "mpx"


def build_app(model: str | os.PathLike[str] | None = None, options: ServeOptions | None = None,
              seed_file: str | os.PathLike[str] | None = None, replicas: int = 2) -> Any:
    """A Ray Serve application: `replicas` copies of the app, each with its own batcher."""
    require(("fastapi", "uvicorn", "ray"), extra="ray")
    from ray import serve

    options = options or ServeOptions()
    settings = dataclasses.asdict(options)

    @serve.deployment(name=DEPLOYMENT, num_replicas=replicas, ray_actor_options={"num_cpus": 0},
                      max_ongoing_requests=options.max_streams + options.max_queue,
                      graceful_shutdown_timeout_s=options.drain_timeout)
    @serve.ingress()
    class MpxReplica:
        def __init__(self, model: str | None, settings: dict[str, Any], seed_file: str | None) -> None:
            self.model, self.options, self.seed_file = model, ServeOptions(**settings), seed_file

        def __serve_build_asgi_app__(self) -> Any:
            from .app import create_app
            replica = serve.get_replica_context().replica_id.unique_id
            return create_app(self.model, self.options, self.seed_file, replica=replica)

    return MpxReplica.bind(None if model is None else str(model), settings,
                           None if seed_file is None else str(seed_file))


def app_builder(args: dict[str, str]) -> Any:
    """For `serve run mpx.runtime.serve.ray_app:app_builder replicas=N model=PATH seed_file=PATH`."""
    return build_app(args.get("model"), ServeOptions(), args.get("seed_file"), int(args.get("replicas", 2)))


def serve_on_ray(model: str | os.PathLike[str] | None, options: ServeOptions,
                 seed_file: str | os.PathLike[str] | None, replicas: int) -> None:
    """`mpx serve --ray`: start (or join, with RAY_ADDRESS) Ray, run the app, block until
    Ctrl-C or SIGTERM, then shut Serve down (each replica drains its streams)."""
    require(("fastapi", "uvicorn", "ray"), extra="ray")
    if not isinstance(replicas, int) or not 1 <= replicas <= 1024:
        from ..errors import OptionsError
        raise OptionsError(f"--replicas must be an integer 1..1,024, got {replicas!r}")
    import signal
    import threading

    import ray
    from ray import serve

    warning = options.exposure_warning()
    if warning:
        log.warning("warning: %s", warning)
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(build_app(model, options, seed_file, replicas), name="mpx", route_prefix="/")
    print(f"mpx serve: {replicas} replicas on Ray Serve at http://{options.host}:{options.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()

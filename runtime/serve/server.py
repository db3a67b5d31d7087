"""`mpx serve`: the app on uvicorn, one process; SIGTERM drains (the streams in flight finish,
new ones are refused with 503), then the process exits 0."""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
from typing import Any

from ..errors import missing_extra
from .options import ServeOptions

log = logging.getLogger("mpx.serve")
NEEDS = ("fastapi", "uvicorn")


def require(modules: tuple[str, ...] = NEEDS, extra: str = "serve") -> None:
    """One line, not an ImportError, when the extra is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise missing_extra("mpx serve", ", ".join(missing), extra)


def serve(model: str | os.PathLike[str] | None = None, options: ServeOptions | None = None,
          seed_file: str | os.PathLike[str] | None = None, replicas: int | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C. `replicas`: run on Ray Serve with that many batchers."""
    options = options or ServeOptions()
    if replicas is not None:
        from .ray_app import serve_on_ray
        serve_on_ray(model, options, seed_file, replicas)
        return
    require()
    import uvicorn

    from .app import create_app
    warning = options.exposure_warning()
    if warning:
        log.warning("warning: %s", warning)
    app = create_app(model, options, seed_file)
    config = uvicorn.Config(app, host=options.host, port=options.port, lifespan="on", log_level="info",
                            timeout_graceful_shutdown=options.drain_timeout, ws_max_size=options.max_body_bytes)
    _Server(config, app).run()


class _Server:
    """uvicorn's Server, with SIGTERM as a drain that ends in exit 0 (uvicorn re-raises the
    signal after its graceful shutdown, which would end the process with 143)."""

    def __new__(cls, config: Any, app: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if sig == signal.SIGTERM:
                    app.state.service.batcher.draining = True
                    log.info("SIGTERM: finishing the streams in flight, taking no new ones")
                    self.should_exit = True
                    return
                super().handle_exit(sig, frame)

        return Server(config)

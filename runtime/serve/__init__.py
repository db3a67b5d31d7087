"""mpx.runtime.serve: many listeners, one model (`mpx serve`; pip install '.[serve]').

    from mpx.runtime.serve import ServeOptions
    from mpx.runtime.serve.app import create_app      # the ASGI app (FastAPI)
    from mpx.runtime.serve.server import serve        # on uvicorn, one process
    from mpx.runtime.serve.ray_app import build_app   # on Ray Serve (pip install '.[ray]')

Importing this package imports neither FastAPI nor torch; importing mpx.runtime does not
import it at all.
"""
from .options import ServeOptions

__all__ = ["ServeOptions"]

"""Demo source site: three invented local sources that publish over time.

``create_app(publish_every_s=..., seed=...)`` gives the ASGI app,
``serve(host, port, publish_every_s, seed)`` runs it with uvicorn in this
process, :class:`DemoServer` runs it in a background thread on a free port
(tests). See :mod:`yuqing.demo_site.app` for the URL layout and the operator
endpoints (``POST /_demo/publish`` injects a post).
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from typing import Any

from yuqing.demo_site.app import create_app

__all__ = ["DemoServer", "create_app", "serve"]


def serve(host: str = "127.0.0.1", port: int = 8100, publish_every_s: float = 20.0, seed: int = 7) -> None:
    """Run the demo site in this process until interrupted."""
    import uvicorn

    app = create_app(publish_every_s=publish_every_s, seed=seed)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class DemoServer:
    """The demo site on ``127.0.0.1:<free port>`` in a daemon thread.

    ``with DemoServer(publish_every_s=3600, seed=7) as demo: demo.url`` —
    ``demo.site`` is the :class:`~yuqing.demo_site.model.DemoSite` behind it.
    """

    def __init__(self, *, publish_every_s: float = 20.0, seed: int = 7, start: datetime | None = None,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        self.app = create_app(publish_every_s=publish_every_s, seed=seed, start=start)
        self.site: Any = self.app.state.site
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, name="demo-site", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> DemoServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"演示站点未能在 {self.url} 启动")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""`unitdissect serve`: a static file server for a rendered site, bound to 127.0.0.1 only."""

from __future__ import annotations

import functools
import http.server
import logging
from pathlib import Path
from typing import Callable

from builder.errors import ConfigError

log = logging.getLogger("unitdissect.report")
HOST = "127.0.0.1"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site folder quietly (no request log on stderr)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def make_server(site_dir: str | Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server for the site folder on 127.0.0.1:port (port 0 picks a free one); not started."""
    path = Path(site_dir).expanduser().resolve()
    if not (path / "index.html").is_file():
        raise ConfigError(
            f"not a rendered site (no index.html): {site_dir}", hint="run `unitdissect render RUN_DIR --out SITE_DIR` first"
        )
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {port}")
    handler = functools.partial(_Handler, directory=str(path))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as e:
        raise ConfigError(f"cannot listen on {HOST}:{port} ({e.strerror or e})", hint="pick another port with --port") from None


def serve(site_dir: str | Path, port: int = 8000, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the site on 127.0.0.1 until Ctrl-C; on_ready gets the URL once it listens."""
    server = make_server(site_dir, port)
    with server:
        if on_ready is not None:
            on_ready(url(server))
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def url(server: http.server.HTTPServer) -> str:
    """The address a server listens on, as an http URL."""
    return f"http://{HOST}:{server.server_address[1]}/"

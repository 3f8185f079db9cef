"""`unitdissect serve`: a static file server for a rendered site, bound to 127.0.0.1 only."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import stat
from pathlib import Path
from typing import Callable

from builder.errors import ConfigError

log = logging.getLogger("unitdissect.report")
HOST = "127.0.0.1"
#: The names a request may give in its ``Host`` header: a page of another site that a DNS
#: rebinding attack points at 127.0.0.1 sends its own name, and is refused.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _host_name(header: str) -> str:
    """The name of a ``Host`` header, without its port (``[::1]:80`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site's regular files quietly: no listings, nothing a link points to outside
    the site, no request naming another host."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def send_head(self):  # noqa: ANN201 - the stdlib's file object or None
        """Refuse other hosts and anything but a regular file inside the site."""
        host = self.headers.get("Host")
        if host is not None and _host_name(host) not in LOOPBACK_NAMES:
            self.send_error(403, "this server answers requests for 127.0.0.1 or localhost only")
            return None
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            if not self.path.split("?", 1)[0].endswith("/"):
                return super().send_head()  # the redirect to the folder's URL with a slash
            path = os.path.join(path, "index.html")
        if not self._inside_site(path):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def _inside_site(self, path: str) -> bool:
        root = os.path.realpath(self.directory)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            return False  # a link out of the site
        try:
            return stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            return False

    def list_directory(self, path):  # noqa: ANN001, ANN201 - the stdlib's signature
        """No folder listings: a folder without index.html is not found."""
        self.send_error(404, "File not found")
        return None


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

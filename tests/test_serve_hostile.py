"""``unitdissect serve`` serves the site's regular files to loopback names only: no link out of
the site, no folder listing, no request for another host (DNS rebinding)."""

from __future__ import annotations

import http.client
import threading
from pathlib import Path

import pytest

from builder.report.serve import make_server


@pytest.fixture()
def server(tmp_path: Path):
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / "index.html").write_text("<p>unitdissect</p>")
    (site / "img" / "a.jpg").write_bytes(b"jpeg")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (site / "x.html").symlink_to(secret)
    (site / "out").symlink_to(tmp_path, target_is_directory=True)
    (site / "inner.html").symlink_to(site / "index.html")  # a link inside the site is fine
    server = make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _get(port: int, path: str, host: str | None = "127.0.0.1") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {} if host is None else {"Host": host}
    connection.putrequest("GET", path, skip_host=True)
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost:8000",
                                  "[::1]:8000", "LOCALHOST", None])
def test_the_site_is_served_to_loopback_names(server, host):
    status, body = _get(server, "/", host)
    assert status == 200 and b"unitdissect" in body
    assert _get(server, "/img/a.jpg", host)[0] == 200
    assert _get(server, "/inner.html", host)[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "[::2]:80"])
def test_other_hosts_are_refused(server, host):
    status, body = _get(server, "/index.html", host)
    assert status == 403 and b"unitdissect" not in body


@pytest.mark.parametrize("path", ["/x.html", "/out/secret.txt", "/img/", "/out/",
                                  "/../secret.txt", "/%2e%2e/secret.txt"])
def test_links_out_of_the_site_and_folder_listings_are_not_found(server, path):
    status, body = _get(server, path)
    assert status == 404 and b"private" not in body and b"a.jpg" not in body

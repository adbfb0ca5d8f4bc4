from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading

import pytest
from click.testing import CliRunner

from geosam.cli.main import cli
from geosam.errors import DownloadError, GeosamError
from geosam.model import registry
from geosam.model.weights import download_weights

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB and a bit more than one chunk with the header
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:6]
GOOD_NAME = f"sam_vit_b_{PREFIX}.pth"


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /ok; at /short claims more bytes than it sends, then closes."""

    def do_GET(self):
        if self.path not in ("/ok", "/short"):
            self.send_error(404)
            return
        self.send_response(200)
        claimed = len(PAYLOAD) * (2 if self.path == "/short" else 1)
        self.send_header("Content-Length", str(claimed))
        self.end_headers()
        self.wfile.write(PAYLOAD)
        self.close_connection = True

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def vit_b_matches_payload(monkeypatch):
    """Make vit_b's official name carry the payload's real sha256 prefix."""
    spec = dataclasses.replace(registry.MODEL_TYPES["vit_b"], official_filename=GOOD_NAME)
    monkeypatch.setitem(registry.MODEL_TYPES, "vit_b", spec)


@pytest.fixture(autouse=True)
def geosam_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))


def test_download(server, tmp_path, vit_b_matches_payload):
    calls = []
    path = download_weights(
        "vit_b", tmp_path / "w", url=f"{server}/ok", progress=lambda d, t: calls.append((d, t))
    )
    assert path == tmp_path / "w" / GOOD_NAME
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == [GOOD_NAME]
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_download_to_cache_by_default(server, tmp_path, vit_b_matches_payload):
    path = download_weights("vit_b", url=f"{server}/ok")
    assert path == tmp_path / "home" / "checkpoints" / GOOD_NAME


def test_existing_file_is_kept(tmp_path, vit_b_matches_payload):
    existing = tmp_path / GOOD_NAME
    existing.write_bytes(b"already here")
    url = "http://127.0.0.1:9/never-contacted"
    assert download_weights("vit_b", tmp_path, url=url) == existing
    assert existing.read_bytes() == b"already here"


def test_checksum_mismatch(server, tmp_path):
    assert PREFIX != "01ec64"
    with pytest.raises(DownloadError) as info:
        download_weights("vit_b", tmp_path, url=f"{server}/ok")
    message = str(info.value)
    assert f"sha256 starts with {PREFIX}, expected 01ec64" in message
    assert "run again" in message
    assert list(tmp_path.iterdir()) == []
    assert isinstance(info.value, OSError) and isinstance(info.value, GeosamError)


def test_interrupted_transfer(server, tmp_path, vit_b_matches_payload):
    with pytest.raises(DownloadError, match="run again"):
        download_weights("vit_b", tmp_path, url=f"{server}/short")
    assert list(tmp_path.iterdir()) == []


def test_http_error(server, tmp_path, vit_b_matches_payload):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_weights("vit_b", tmp_path, url=f"{server}/missing")
    assert list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path, vit_b_matches_payload):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="run again"):
        download_weights("vit_b", tmp_path, url=f"http://127.0.0.1:{port}/x", timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_tiny_has_no_weights(tmp_path):
    with pytest.raises(GeosamError, match="tiny has no official weights"):
        download_weights("tiny", tmp_path)


def test_cli_download(server, tmp_path, vit_b_matches_payload):
    dest = tmp_path / "w"
    result = CliRunner().invoke(
        cli, ["-q", "weights", "download", "vit_b", "--url", f"{server}/ok", "--dir", str(dest)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(dest / GOOD_NAME)
    assert (dest / GOOD_NAME).read_bytes() == PAYLOAD


def test_cli_download_mismatch(server, tmp_path):
    args = ["weights", "download", "vit_b", "--url", f"{server}/ok", "--dir", str(tmp_path)]
    result = CliRunner().invoke(cli, ["-q", *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "expected 01ec64" in lines[0]
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_tiny(tmp_path):
    result = CliRunner().invoke(cli, ["weights", "download", "tiny", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "vit_b" in result.output


def test_cli_list(tmp_path, vit_b_matches_payload):
    (tmp_path / GOOD_NAME).write_bytes(b"x")
    result = CliRunner().invoke(cli, ["weights", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Weights folder: {tmp_path}"
    vit_b = next(line for line in lines if line.startswith("vit_b"))
    assert "cached" in vit_b and str(tmp_path / GOOD_NAME) in vit_b
    vit_h = next(line for line in lines if line.startswith("vit_h"))
    assert "missing" in vit_h and "geosam weights download vit_h" in vit_h
    assert any(line.startswith("tiny") and "trained from scratch" in line for line in lines)

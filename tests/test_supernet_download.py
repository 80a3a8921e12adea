"""`nat supernet download`: served from 127.0.0.1 by the test (nothing leaves the machine)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch

from nat.cli import main
from nat.space.definition import get_space
from nat.supernet import Supernet
from nat.supernet.zoo import ZOO, downloaded, sidecar


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (name -> bytes) with HTTP range support; ``cut`` (name -> n) sends only the first n
    bytes of a whole-file answer and then drops the connection, as a broken transfer does."""

    files: dict[str, bytes] = {}
    cut: dict[str, int] = {}
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        self.ranges.append(self.headers.get("Range"))
        if name not in self.files:
            self.send_error(404)
            return
        data, start = self.files[name], 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if not self.headers.get("Range") and name in self.cut:
            body = body[: self.cut.pop(name)]
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def server():
    _Files.files, _Files.cut, _Files.ranges = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield _Files, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _ofa_file(width: float, classes: int = 1000) -> bytes:
    """A checkpoint laid out as OFA's (``{"state_dict": ...}``, its key names and shapes)."""
    import io

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save({"state_dict": Supernet(get_space("ofa_mbv3"), width, classes).state_dict()}, buf)
    return buf.getvalue()


def test_download_checks_records_and_prints_the_line_to_use(server, tmp_path, capsys) -> None:
    files, url = server
    files.files["w10"] = data = _ofa_file(1.0)
    to = tmp_path / "supernets"
    assert main(["supernet", "download", "ofa_mbv3_w1.0", "--to", str(to), "--url", f"{url}/w10"]) == 0
    path = to / "ofa_mbv3_d234_e346_k357_w1.0.pth"
    assert path.read_bytes() == data
    record = json.loads(sidecar(path).read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["url"] == f"{url}/w10"
    out = capsys.readouterr().out
    assert f"supernet: {path}" in out and record["sha256"] in out
    assert downloaded(to) == {"ofa_mbv3_w1.0": path}
    assert sorted(p.name for p in to.iterdir()) == sorted([path.name, sidecar(path).name])  # no .part left
    # a second call keeps the file it has and fetches nothing
    assert main(["supernet", "download", "ofa_mbv3_w1.0", "--to", str(to), "--url", f"{url}/w10"]) == 0
    assert len(files.ranges) == 1


def test_a_broken_download_resumes_where_it_stopped(server, tmp_path, capsys) -> None:
    files, url = server
    files.files["w12"] = data = _ofa_file(1.2)
    files.cut["w12"] = len(data) // 3
    argv = ["supernet", "download", "ofa_mbv3_w1.2", "--to", str(tmp_path), "--url", f"{url}/w12"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "run the same command again" in err and "Traceback" not in err
    part = tmp_path / "ofa_mbv3_d234_e346_k357_w1.2.pth.part"
    assert part.stat().st_size == len(data) // 3 and downloaded(tmp_path) == {}
    assert main(argv) == 0
    assert files.ranges[-1] == f"bytes={len(data) // 3}-"  # only the rest was asked for
    assert (tmp_path / "ofa_mbv3_d234_e346_k357_w1.2.pth").read_bytes() == data and not part.exists()


@pytest.mark.parametrize(
    ("served", "message"),
    [
        (lambda: _ofa_file(1.2), "it is the width 1.2 supernet, not 1.0"),
        (lambda: _ofa_file(1.0, classes=10), "its classifier has 10 classes"),
        (lambda: b"<html>not found</html>", "not a readable PyTorch checkpoint"),
        (lambda: _pickled_code(), "holds more than weights"),
    ],
    ids=["other-width", "other-head", "html", "code"],
)
def test_what_is_not_the_supernet_is_refused_and_removed(server, tmp_path, capsys, served, message) -> None:
    files, url = server
    files.files["f"] = served()
    argv = ["supernet", "download", "ofa_mbv3_w1.0", "--to", str(tmp_path), "--url", f"{url}/f"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "is not OFA's ofa_mbv3_d234_e346_k357_w1.0" in err[0]
    assert list(tmp_path.iterdir()) == []


def _pickled_code() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": Path("x")}, buf)
    return buf.getvalue()


def test_unknown_names_and_unreachable_servers_are_one_line(server, tmp_path, capsys) -> None:
    _, url = server
    assert main(["supernet", "download", "ofa_mbv3_w1", "--to", str(tmp_path)]) == 1
    assert "did you mean 'ofa_mbv3_w1." in capsys.readouterr().err
    assert main(["supernet", "download", "ofa_mbv3_w1.0", "--to", str(tmp_path), "--url", f"{url}/none"]) == 1
    assert "answered HTTP 404" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_list_shows_what_is_here(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NAT_SUPERNET_DIR", str(tmp_path))
    assert main(["supernet", "list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and all(f"nat supernet download {n}" in out for n in ZOO)

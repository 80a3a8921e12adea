"""OFA's published ImageNet supernets: where they come from, where nat keeps them, and fetching them.

NAT starts from OFA's MobileNetV3 supernets trained on ImageNet (the paper's w1.0 and w1.2). nat does not
ship them (tens of MB each, OFA's licence), so ``nat supernet download NAME`` fetches one from the
address OFA's own package uses (``ofa.model_zoo.ofa_net``), checks that what arrived is a loadable OFA
checkpoint of that architecture (weights-only load, every key and shape), records its sha256 beside it and
moves it into place atomically. A broken transfer leaves a ``.part`` file that the next call resumes
with an HTTP range request.

Downloaded supernets live in one folder (`supernet_dir`), which is also where a search without a
``supernet:`` looks first (`nat.search.supernets.choose_supernet`).
"""

from __future__ import annotations

import difflib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nat.errors import CheckpointError, ConfigError, NATError
from nat.files import sha256_file, write_json_atomic

#: where OFA's package downloads its supernets from (``ofa.model_zoo.ofa_net``)
OFA_BASE_URL = "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets/"
#: environment variable naming the folder of downloaded supernets (default: the user's cache)
DIR_VARIABLE = "NAT_SUPERNET_DIR"
_CHUNK = 1 << 20  # bytes read from the network at a time


class DownloadError(NATError):
    """A download could not start or finish (network, server or disk); the same command resumes it."""


@dataclass(frozen=True)
class ZooEntry:
    """One published supernet: its short name, OFA's file name (the last part of its address), width."""

    name: str
    ofa_name: str
    width: float

    @property
    def url(self) -> str:
        return OFA_BASE_URL + self.ofa_name

    @property
    def filename(self) -> str:
        return f"{self.ofa_name}.pth"


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("ofa_mbv3_w1.0", "ofa_mbv3_d234_e346_k357_w1.0", 1.0),
        ZooEntry("ofa_mbv3_w1.2", "ofa_mbv3_d234_e346_k357_w1.2", 1.2),
    )
}


def zoo_entry(name: str) -> ZooEntry:
    """The entry for a short name (``ofa_mbv3_w1.0``) or OFA's own (``ofa_mbv3_d234_e346_k357_w1.0``)."""
    for entry in ZOO.values():
        if name in (entry.name, entry.ofa_name, entry.filename):
            return entry
    close = difflib.get_close_matches(name, list(ZOO), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown supernet {name!r}: {hint}nat can download {', '.join(ZOO)}")


def supernet_dir() -> Path:
    """The folder of downloaded supernets: ``$NAT_SUPERNET_DIR``, else ``$XDG_CACHE_HOME/nat/supernets``,
    else ``~/.cache/nat/supernets``."""
    if os.environ.get(DIR_VARIABLE):
        return Path(os.environ[DIR_VARIABLE]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "nat" / "supernets"


def sidecar(path: Path) -> Path:
    """The JSON beside a downloaded file that records where it came from and its sha256."""
    return path.with_suffix(".json")


def downloaded(folder: Path | None = None) -> dict[str, Path]:
    """The published supernets present in ``folder`` (default `supernet_dir`), by short name, in
    `ZOO`'s order; a file counts once its download finished (its sidecar written)."""
    folder = supernet_dir() if folder is None else folder
    found = {}
    for entry in ZOO.values():
        path = folder / entry.filename
        if path.is_file() and sidecar(path).is_file():
            found[entry.name] = path
    return found


def download(
    name: str,
    to: Path | None = None,
    *,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch the published supernet ``name`` into ``to`` (default `supernet_dir`) and return its path.

    ``url`` replaces OFA's address (a mirror). A file already there with its sidecar is kept as it is. A
    ``.part`` file left by a broken transfer is continued where it stopped. ``progress(done, total)`` is
    called as bytes arrive. What arrived must load as OFA's MobileNetV3 supernet of the entry's width with
    ImageNet's 1,000 classes, else it is removed and `CheckpointError` says so."""
    entry = zoo_entry(name)
    folder = supernet_dir() if to is None else Path(to).expanduser()
    target = folder / entry.filename
    if target.is_file() and sidecar(target).is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {folder}: {exc.strerror or exc}") from None
    source = url or entry.url
    part = target.with_name(target.name + ".part")
    _fetch(source, part, progress, timeout)
    _check_arrival(part, entry, source)
    digest = sha256_file(part)
    os.replace(part, target)  # same folder: atomic, so the file is either whole or absent
    write_json_atomic(
        sidecar(target),
        {
            "name": entry.name,
            "ofa_name": entry.ofa_name,
            "url": source,
            "sha256": digest,
            "bytes": target.stat().st_size,
        },
    )
    return target


def _fetch(url: str, part: Path, progress: Callable[[int, int | None], None] | None, timeout: float) -> None:
    """Bring ``url`` into ``part``, continuing what ``part`` already holds (HTTP range request)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the range starts at the end: the part file is already whole
            return
        raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason}; check the address and the network") from None
    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0  # the server sent the whole file: start the part file again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        done = have
        try:
            with part.open("ab" if resumed else "wb") as f:
                while block := response.read(_CHUNK):
                    f.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadError(
                f"the download of {url} stopped after {done:,} bytes ({exc}); run the same command again "
                f"to continue from {part}"
            ) from None
    if total is not None and done != total:
        raise DownloadError(
            f"the download of {url} stopped after {done:,} of {total:,} bytes; run the same command again "
            f"to continue from {part}"
        )


def _check_arrival(part: Path, entry: ZooEntry, source: str) -> None:
    """Load what arrived as the entry's supernet (weights only, every key and shape) or remove it."""
    from nat.supernet.checkpoint import from_ofa_checkpoint

    try:
        net = from_ofa_checkpoint(part, "ofa_mbv3")
        problem = None
        if net.width_mult != entry.width:
            problem = f"it is the width {net.width_mult} supernet, not {entry.width}"
        elif net.num_classes != 1000:
            problem = f"its classifier has {net.num_classes} classes, not ImageNet's 1,000"
    except CheckpointError as exc:
        problem = str(exc).replace(str(part), "the file")
    if problem is not None:
        part.unlink(missing_ok=True)
        raise CheckpointError(
            f"what arrived from {source} is not OFA's {entry.ofa_name} supernet ({problem}); it was removed"
        )


def describe(path: Path) -> dict[str, object]:
    """What a downloaded file's sidecar records (empty when it has none or it cannot be read)."""
    try:
        return json.loads(sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}

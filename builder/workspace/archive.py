"""Archives of a workspace: pack config, runs and site into one ``.tar.gz``, and check one.

An archive holds one folder, ``<stem>/``, with the workspace's ``unitdissect.toml`` (when it has
one), ``runs/`` (run directories and ``runs/build-manifest.json``, without ``checkpoints/``),
``site/``, and ``archive-manifest.json``: the SHA-256 and size of every other file. Checkpoints
and the dataset cache (``data/``) are left out: they are large, and the config and the
fingerprints in ``runs/build-manifest.json`` rebuild them. See docs/workspace.md.

Checking never trusts the archive: a member with an absolute path, a ``..`` component, a link
that points outside, or a device is refused by name before anything is written, and files are
only ever written into a fresh folder given by the caller (a temporary one for ``--rerun``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Callable, Iterator

import numpy as np

from .. import __version__
from ..errors import ArchiveError
from ..io import atomic_open
from .config import CONFIG_NAME, load_config

__all__ = ["ARCHIVE_FORMAT", "MANIFEST_NAME", "RTOL", "ATOL", "ArchiveInfo", "Difference",
           "VerifyReport", "default_archive_name", "create_archive", "verify_archive",
           "extract_archive", "result_files", "compare_results"]

logger = logging.getLogger(__name__)

ARCHIVE_FORMAT = "unitdissect-archive"
ARCHIVE_FORMAT_VERSION = 1
#: The manifest's name inside the archive's top folder.
MANIFEST_NAME = "archive-manifest.json"
#: Tolerance of ``--rerun`` for float CSV fields and arrays: ``|rebuilt - archived| <=
#: ATOL + RTOL * |archived|`` (``np.isclose``; NaN equals NaN, infinities must match).
RTOL = 1e-5
ATOL = 1e-6

_CHUNK = 1 << 20
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeDecodeError)


@dataclass
class ArchiveInfo:
    """What ``create_archive`` wrote."""

    path: Path
    files: int  # files listed in the manifest (the manifest itself not counted)
    bytes: int  # their total size, uncompressed


@dataclass(frozen=True)
class Difference:
    """One result file that differs between the archive and its rebuild."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class VerifyReport:
    """The outcome of ``verify_archive``: files whose hash differs, missing ones, extra ones."""

    archive: Path
    root: str  # the archive's top folder
    files: int  # files the manifest lists
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    rerun: list[Difference] | None = None  # None: no rerun asked
    rerun_files: int = 0  # result files compared by the rerun

    @property
    def ok(self) -> bool:
        """True when every hash matches and the rerun (if any) agrees within tolerance."""
        return not (self.changed or self.missing or self.extra or self.rerun)

    def problems(self) -> list[str]:
        """One line per problem: ``changed|missing|extra  PATH`` and ``rerun  PATH: why``."""
        lines = [f"changed  {p}  (sha256 differs)" for p in self.changed]
        lines += [f"missing  {p}" for p in self.missing]
        lines += [f"extra    {p}" for p in self.extra]
        lines += [f"rerun    {d}" for d in self.rerun or ()]
        return lines


# -- creating ----------------------------------------------------------------------------------

def default_archive_name(now: _dt.datetime | None = None) -> str:
    """``unitdissect-archive-YYYYMMDD-HHMMSS.tar.gz`` in UTC (``now`` for tests)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"unitdissect-archive-{now:%Y%m%d-%H%M%S}.tar.gz"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return path.stem or "unitdissect-archive"


def _excluded(rel: PurePosixPath) -> bool:
    """Checkpoints (``runs/<name>/checkpoints/``) and temporary files of atomic writers."""
    parts = rel.parts
    if len(parts) > 3 and parts[0] == "runs" and parts[2] == "checkpoints":
        return True
    return rel.name.startswith(".") and rel.name.endswith(".tmp")


def _walk(folder: Path, arcbase: PurePosixPath, skip: Path) -> Iterator[tuple[str, Path]]:
    """``(archive path, file)`` for the regular files under ``folder``, sorted; no symlinks."""
    for here, dirs, files in os.walk(folder):  # does not follow symlinked folders
        dirs.sort()
        for name in sorted(files):
            path = Path(here) / name
            rel = arcbase / path.relative_to(folder).as_posix()
            if path.is_symlink():
                logger.warning("not archived (a symbolic link): %s", path)
            elif path.resolve() != skip and not _excluded(rel) and path.is_file():
                yield str(rel), path


class _HashingReader:
    """A read-only file that hashes what is read through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.sha.update(data)
        return data


def create_archive(workspace: str | Path = ".", out: str | Path | None = None) -> ArchiveInfo:
    """Pack the workspace's config, ``runs/`` and site with a SHA-256 manifest into ``out``."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        raise ArchiveError(f"workspace {workspace}: no such folder")
    runs = workspace / "runs"
    if not runs.is_dir():
        raise ArchiveError(f"{workspace}: no runs/ folder to archive",
                           hint="run `unitdissect build` in the workspace first")
    out = Path(out) if out is not None else workspace / default_archive_name()
    site_out = load_config(workspace).site.out
    site = workspace / site_out
    if site.resolve() in (workspace.resolve(), *workspace.resolve().parents):
        raise ArchiveError(f"[site] out = {site_out!r} is the workspace itself or contains it; "
                           "give the site its own folder")
    members: list[tuple[str, Path]] = []
    if (workspace / CONFIG_NAME).is_file():
        members.append((CONFIG_NAME, workspace / CONFIG_NAME))
    skip = out.resolve()
    members += _walk(runs, PurePosixPath("runs"), skip)
    if site.is_dir():
        members += _walk(site, PurePosixPath("site"), skip)
    else:
        logger.warning("no site folder %s: the archive has no site/", site)

    root = _stem(out)
    files: dict[str, dict[str, object]] = {}
    with atomic_open(out, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for arcname, path in members:
            stat = path.stat()
            info = tarfile.TarInfo(f"{root}/{arcname}")
            info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
            with path.open("rb") as src:
                reader = _HashingReader(src)
                tar.addfile(info, reader)
            files[arcname] = {"sha256": reader.sha.hexdigest(), "size": stat.st_size}
        now = _dt.datetime.now(_dt.timezone.utc)
        manifest = {
            "format": ARCHIVE_FORMAT, "format_version": ARCHIVE_FORMAT_VERSION,
            "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "unitdissect": __version__,
            "config": CONFIG_NAME if CONFIG_NAME in files else None,
            "site": "site" if site.is_dir() else None, "site_out": site_out,
            "excluded": ["data/", "runs/*/checkpoints/"],
            "files": files,
        }
        data = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        info = tarfile.TarInfo(f"{root}/{MANIFEST_NAME}")
        info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o644
        tar.addfile(info, io.BytesIO(data))
    return ArchiveInfo(out, len(files), sum(int(v["size"]) for v in files.values()))


# -- safety ------------------------------------------------------------------------------------

def _unsafe(archive: Path, name: str, why: str) -> ArchiveError:
    return ArchiveError(f"{archive}: unsafe member {name!r}: {why}; refusing the archive")


def _escapes(path: str) -> bool:
    """Whether a POSIX path is absolute or leaves its folder (``..``) once normalised."""
    if path.startswith(("/", "\\")) or PureWindowsPath(path).drive:
        return True
    norm = posixpath.normpath(path)
    return norm == ".." or norm.startswith("../")


def _check_member(archive: Path, member: tarfile.TarInfo) -> str:
    """The member's normalised name; raise ArchiveError naming it when it is unsafe."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise _unsafe(archive, name, "absolute path")
    if ".." in PurePosixPath(name).parts or ".." in PureWindowsPath(name).parts:
        raise _unsafe(archive, name, "'..' in its path")
    if member.issym():
        target = posixpath.join(posixpath.dirname(name), member.linkname)
        if member.linkname.startswith("/") or _escapes(target):
            raise _unsafe(archive, name, f"symbolic link to {member.linkname!r} points outside "
                          "the archive")
    elif member.islnk():
        if _escapes(member.linkname):
            raise _unsafe(archive, name, f"hard link to {member.linkname!r} points outside "
                          "the archive")
    elif not (member.isfile() or member.isdir()):
        raise _unsafe(archive, name, "not a regular file, folder or link")
    return str(PurePosixPath(name))


def _open(archive: Path) -> tarfile.TarFile:
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive file")
    try:
        return tarfile.open(archive, mode="r:gz")
    except _READ_ERRORS as e:
        raise ArchiveError(f"{archive}: not a readable .tar.gz archive "
                           f"({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# -- checking ----------------------------------------------------------------------------------

def _scan(archive: Path) -> tuple[dict[str, str], dict[str, bytes], list[str]]:
    """Check every member; return the hash of each regular file, the bytes of manifest
    candidates, and the links and other non-file members (which have no content to hash)."""
    hashes: dict[str, str] = {}
    manifests: dict[str, bytes] = {}
    links: list[str] = []
    seen: set[str] = set()
    with _open(archive) as tar:
        try:
            for member in tar:
                name = _check_member(archive, member)
                if member.isdir():
                    continue
                if name in seen:
                    raise ArchiveError(f"{archive}: member {name!r} appears twice; "
                                       "refusing the archive")
                seen.add(name)
                if member.issym() or member.islnk():
                    links.append(name)
                if not member.isfile():
                    continue
                sha, src = hashlib.sha256(), tar.extractfile(member)
                keep = PurePosixPath(name).name == MANIFEST_NAME and name.count("/") == 1
                chunks = []
                while block := src.read(_CHUNK):
                    sha.update(block)
                    if keep:
                        chunks.append(block)
                hashes[name] = sha.hexdigest()
                if keep:
                    manifests[name] = b"".join(chunks)
            while tar.fileobj.read(_CHUNK):  # to the end: gzip checks its CRC and length there
                pass
        except ArchiveError:
            raise
        except _READ_ERRORS as e:
            raise ArchiveError(f"{archive}: corrupt archive ({_one_line(e)})") from None
    return hashes, manifests, links


def _read_manifest(archive: Path, manifests: dict[str, bytes]) -> tuple[str, dict]:
    if len(manifests) != 1:
        found = "none" if not manifests else ", ".join(sorted(manifests))
        raise ArchiveError(f"{archive}: expected one <folder>/{MANIFEST_NAME}, found {found}; "
                           "not a unitdissect archive")
    (name, data), = manifests.items()
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise ArchiveError(f"{archive}: {name} is not valid JSON ({_one_line(e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise ArchiveError(f"{archive}: {name} is not a {ARCHIVE_FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()):
        raise ArchiveError(f"{archive}: {name}: 'files' must map paths to {{\"sha256\": ...}}")
    if manifest.get("format_version", 0) > ARCHIVE_FORMAT_VERSION:
        raise ArchiveError(f"{archive}: archive format version {manifest['format_version']} "
                           f"is newer than this unitdissect reads ({ARCHIVE_FORMAT_VERSION})",
                           hint="upgrade unitdissect")
    return name.split("/", 1)[0], manifest


def extract_archive(archive: str | Path, dest: str | Path,
                    include: Callable[[str], bool] | None = None) -> dict:
    """Safely extract the regular files (those ``include(path)`` accepts) of an archive's top
    folder into the empty or new folder ``dest``; return the manifest (hashes: verify_archive)."""
    archive, dest = Path(archive), Path(dest)
    _, manifests, _ = _scan(archive)  # every member is checked before anything is written
    root, manifest = _read_manifest(archive, manifests)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ArchiveError(f"{dest}: extraction folder is not empty")
    real_dest = os.path.realpath(dest)
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4: a second opinion
    with _open(archive) as tar:
        try:
            for member in tar:
                name = _check_member(archive, member)
                if not member.isfile() or not name.startswith(root + "/"):
                    continue
                rel = name[len(root) + 1:]
                if include is not None and not include(rel):
                    continue
                if data_filter is not None:
                    try:
                        data_filter(member, real_dest)
                    except tarfile.FilterError as e:
                        raise _unsafe(archive, name, _one_line(e)) from None
                target = os.path.realpath(os.path.join(real_dest, rel))
                if os.path.commonpath([real_dest, target]) != real_dest:
                    raise _unsafe(archive, name, "it would be written outside the folder")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tar.extractfile(member) as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        except ArchiveError:
            raise
        except _READ_ERRORS as e:
            raise ArchiveError(f"{archive}: cannot extract into {dest} "
                               f"({_one_line(e)})") from None
    return manifest


def verify_archive(archive: str | Path, rerun: bool = False,
                   log: Callable[[str], None] = lambda s: None) -> VerifyReport:
    """Check every file of an archive against its manifest; with ``rerun``, rebuild its config
    in a temporary workspace and compare the result files within ``RTOL`` / ``ATOL``."""
    archive = Path(archive)
    hashes, manifests, links = _scan(archive)
    root, manifest = _read_manifest(archive, manifests)
    prefix = root + "/"
    expected = {k: v["sha256"] for k, v in manifest["files"].items()}
    actual = {n[len(prefix):]: h for n, h in hashes.items()
              if n.startswith(prefix) and n != prefix + MANIFEST_NAME}
    report = VerifyReport(archive, root, len(expected))
    # a link where a file was archived counts as changed; other links and stray files: extra
    inside = {n[len(prefix):] for n in links if n.startswith(prefix)}
    report.changed = sorted(p for p, h in expected.items()
                            if (p in actual and actual[p] != h) or p in inside)
    report.missing = sorted(p for p in expected if p not in actual and p not in inside)
    report.extra = sorted([n for n in [*hashes, *links] if not n.startswith(prefix)] +
                          [p for p in [*actual, *inside] if p not in expected])
    if rerun:
        report.rerun, report.rerun_files = _rerun(archive, manifest, log)
    return report


def _rerun(archive: Path, manifest: dict, log: Callable[[str], None]
           ) -> tuple[list[Difference], int]:
    """Rebuild the archived config in a temporary workspace; compare its result files."""
    from . import pipeline

    with tempfile.TemporaryDirectory(prefix="unitdissect-verify-") as tmp:
        archived, rebuilt = Path(tmp) / "archived", Path(tmp) / "rebuild"
        extract_archive(archive, archived,
                        include=lambda p: p == CONFIG_NAME or _is_result(PurePosixPath(p)))
        rebuilt.mkdir()
        if (archived / CONFIG_NAME).is_file():
            shutil.copyfile(archived / CONFIG_NAME, rebuilt / CONFIG_NAME)
        else:
            log("no unitdissect.toml in the archive: rebuilding the demo config")
        config = load_config(rebuilt)
        log(f"rebuilding in {rebuilt} ...")
        # relative paths in the config (weights, data folders) resolve from where verify runs
        pipeline.build(rebuilt, config, progress=False, log=log, root=Path.cwd())
        compared = len(set(result_files(archived)) | set(result_files(rebuilt)))
        return compare_results(archived, rebuilt), compared


# -- comparing results -------------------------------------------------------------------------

def _is_result(rel: PurePosixPath) -> bool:
    """``units.csv``, ``iou.npy``, and the CSV and NPY files of ``ablation/`` folders."""
    return rel.name in ("units.csv", "iou.npy") or (
        "ablation" in rel.parts[:-1] and rel.suffix in (".csv", ".npy"))


def result_files(folder: str | Path) -> list[str]:
    """The result files under ``folder`` (``units.csv``, ``iou.npy``, ablation CSV/NPY), as
    sorted POSIX paths relative to it."""
    folder = Path(folder)
    return sorted(str(PurePosixPath(p.relative_to(folder).as_posix()))
                  for p in folder.rglob("*")
                  if p.is_file() and _is_result(PurePosixPath(p.relative_to(folder).as_posix())))


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _close(archived: list[str], rebuilt: list[str], rtol: float, atol: float) -> np.ndarray:
    """Per cell: both read as floats and are close (``np.isclose``, NaN equal to NaN)."""
    a = [_float(x) for x in archived]
    b = [_float(x) for x in rebuilt]
    numeric = np.array([x is not None and y is not None for x, y in zip(a, b)], dtype=bool)
    va = np.array([x if n else 0.0 for x, n in zip(a, numeric)], dtype=np.float64)
    vb = np.array([y if n else 0.0 for y, n in zip(b, numeric)], dtype=np.float64)
    return numeric & np.isclose(vb, va, rtol=rtol, atol=atol, equal_nan=True)


def _compare_csv(expected: Path, actual: Path, rtol: float, atol: float) -> str | None:
    with expected.open(newline="", encoding="utf-8") as f:
        want = list(csv.reader(f))
    with actual.open(newline="", encoding="utf-8") as f:
        got = list(csv.reader(f))
    if not want or not got or want[0] != got[0]:
        return "columns differ: " + (",".join(want[0]) if want else "(empty)") + " vs " + \
            (",".join(got[0]) if got else "(empty)")
    header = want[0]
    if len(want) != len(got):
        return f"{len(want) - 1} rows archived, {len(got) - 1} rebuilt"
    if any(len(a) != len(b) for a, b in zip(want, got)):
        return "rows of different lengths"
    # cells whose text differs: (row, column, archived, rebuilt); usually none or few
    diff = [(r, c, a, b) for r, (ra, rb) in enumerate(zip(want[1:], got[1:]), start=1)
            for c, (a, b) in enumerate(zip(ra, rb)) if a != b]
    if not diff:
        return None
    close = _close([d[2] for d in diff], [d[3] for d in diff], rtol, atol)
    diff = [d for d, ok in zip(diff, close) if not ok]
    if not diff:
        return None
    r, c, x, y = diff[0]
    more = f" (and {len(diff) - 1} more cells)" if len(diff) > 1 else ""
    return f"row {r}, column {header[c] if c < len(header) else c}: {x!r} archived, " \
           f"{y!r} rebuilt{more}"


def _compare_npy(expected: Path, actual: Path, rtol: float, atol: float) -> str | None:
    try:
        want = np.load(expected, allow_pickle=False)
        got = np.load(actual, allow_pickle=False)
    except (OSError, ValueError) as e:
        return f"unreadable array ({_one_line(e)})"
    if want.shape != got.shape:
        return f"shape {list(want.shape)} archived, {list(got.shape)} rebuilt"
    real = (np.bool_, np.integer, np.floating)
    if not all(any(np.issubdtype(x.dtype, k) for k in real) for x in (want, got)):
        return None if np.array_equal(want, got) else "arrays differ"
    want, got = want.astype(np.float64), got.astype(np.float64)
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    gap = np.abs(got - want)[bad]
    gap = gap[~np.isnan(gap)]
    worst = f"max |difference| {gap.max():.3g}" if gap.size else "NaN against a number"
    return f"{int(bad.sum())} of {want.size} values differ ({worst})"


def compare_results(expected: str | Path, actual: str | Path, rtol: float = RTOL,
                    atol: float = ATOL) -> list[Difference]:
    """The result files that differ between two folders (``expected``: the archived one):
    CSV text exactly except cells that read as floats, arrays with ``np.isclose``."""
    expected, actual = Path(expected), Path(actual)
    want, got = set(result_files(expected)), set(result_files(actual))
    differences = [Difference(p, "missing from the rebuild") for p in sorted(want - got)]
    differences += [Difference(p, "not in the archive") for p in sorted(got - want)]
    for rel in sorted(want & got):
        compare = _compare_csv if rel.endswith(".csv") else _compare_npy
        try:
            reason = compare(expected / rel, actual / rel, rtol, atol)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            reason = f"unreadable ({_one_line(e)})"
        if reason:
            differences.append(Difference(rel, reason))
    return sorted(differences, key=lambda d: d.path)

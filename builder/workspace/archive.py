"""Archives of a workspace: pack config, runs and site into one ``.tar.gz``, and check one.

An archive holds one folder, ``<stem>/``, with the workspace's ``unitdissect.toml`` (when it has
one), the files the config names that are not results (model ``.py`` files, weights, class
lists: ``confine.carried_inputs``), ``runs/`` (run directories and ``runs/build-manifest.json``,
without ``checkpoints/``), ``site/``, and ``archive-manifest.json``: the SHA-256 and size of
every other file. Checkpoints and the dataset cache (``data/``) are left out: they are large,
and the config and the fingerprints in ``runs/build-manifest.json`` rebuild them. See
docs/workspace.md.

Checking never trusts the archive: a member with an absolute path, a ``..`` component, a link
that points outside, a device, a sparse file or control characters in its name is refused by
name, and so is an archive of too many members or too many unpacked bytes, before anything is
written; files are only ever written into a fresh folder given by the caller (a temporary one
for ``--rerun``). ``--rerun`` runs the archived config confined to that folder, and no Python
code unless trusted (``confine``).
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
from ..errors import ArchiveError, ConfigError
from ..io import atomic_open
from ..lock import LOCK_NAME, hold_folder
from ..paths import output_file
from .config import CONFIG_NAME, DEMO_CONFIG, WorkspaceConfig, load_config, parse_config
from .confine import (archive_path, carried_inputs, check_confined, check_trusted, code_specs,
                      has_control_characters, problem, working_directory)

__all__ = ["ARCHIVE_FORMAT", "MANIFEST_NAME", "RTOL", "ATOL", "ArchiveInfo", "Difference",
           "MAX_MEMBERS", "MAX_UNPACKED_BYTES", "VerifyReport", "default_archive_name",
           "create_archive", "verify_archive", "extract_archive", "result_files",
           "compare_results"]

logger = logging.getLogger(__name__)

ARCHIVE_FORMAT = "unitdissect-archive"
ARCHIVE_FORMAT_VERSION = 1
#: The manifest's name inside the archive's top folder.
MANIFEST_NAME = "archive-manifest.json"
#: Tolerance of ``--rerun`` for float CSV fields and arrays: ``|rebuilt - archived| <=
#: ATOL + RTOL * |archived|`` (``np.isclose``; NaN equals NaN, infinities must match).
RTOL = 1e-5
ATOL = 1e-6

#: Limits of an archive that ``verify`` reads, checked member by member before anything is
#: extracted: a gzip of a few MB can hold millions of members or unpack to many GB.
MAX_MEMBERS = 100_000
#: The total unpacked size of the members (and anything after the end of the tar).
MAX_UNPACKED_BYTES = 16 << 30
#: The largest config read from an archive.
MAX_CONFIG_BYTES = 1 << 20

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
    """Checkpoints (``runs/<name>/checkpoints/``), temporary files of atomic writers, and the
    lock files of commands writing a folder."""
    parts = rel.parts
    if len(parts) > 3 and parts[0] == "runs" and parts[2] == "checkpoints":
        return True
    return rel.name == LOCK_NAME or (rel.name.startswith(".") and rel.name.endswith(".tmp"))


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


def _inputs(workspace: Path, config: WorkspaceConfig, taken: dict[str, Path],
            skip: Path) -> list[tuple[str, Path]]:
    """``(archive path, file)`` for the files the config names that are not results (model
    ``.py`` files, weights, class lists, local segmenter folders), those in ``taken`` (already
    archived) included; a warning names each one left out (outside the workspace, a link
    out, missing, or clashing with an archived file)."""
    try:
        carried = carried_inputs(config)
    except ConfigError as e:  # a spec the build refuses too: archive what there is
        logger.warning("no input files archived: %s", e)
        return []
    found: list[tuple[str, Path]] = []
    for item in carried:
        why = problem(item, workspace)
        if why is not None:
            logger.warning("not archived (%s): %s; `verify --rerun` refuses it", why,
                           item.label())
            continue
        rel = archive_path(item)
        path = workspace / rel
        if rel in (".", CONFIG_NAME, MANIFEST_NAME):
            logger.warning("not archived (not a file the archive can carry): %s", item.label())
        elif item.folder and path.is_dir():
            found += _walk(path, PurePosixPath(rel), skip)
        elif not item.folder and path.is_file():
            found.append((rel, path))
        elif not item.folder:  # (hf:NAME that is no folder names a hub model)
            logger.warning("not archived (no such file): %s", item.label())
    inputs: dict[str, Path] = {}
    for rel, path in found:
        if rel in taken and taken[rel].resolve() != path.resolve():
            logger.warning("not archived: %s clashes with the archived %s", path, rel)
        else:
            inputs[rel] = path
    return sorted(inputs.items())


def _check_size(members: list[tuple[str, Path]]) -> None:
    """Refuse to write an archive that ``verify`` would refuse for its size."""
    total = sum(path.stat().st_size for _, path in members)
    if len(members) + 1 > MAX_MEMBERS or total > MAX_UNPACKED_BYTES:
        raise ArchiveError(f"{len(members):,} files of {_size(total)}: over the limits that "
                           f"`unitdissect verify` reads ({MAX_MEMBERS:,} members, "
                           f"{_size(MAX_UNPACKED_BYTES)})")


def create_archive(workspace: str | Path = ".", out: str | Path | None = None) -> ArchiveInfo:
    """Pack the workspace's config, the inputs it names, ``runs/`` and site with a SHA-256
    manifest into ``out``."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        raise ArchiveError(f"workspace {workspace}: no such folder")
    runs = workspace / "runs"
    if not runs.is_dir():
        raise ArchiveError(f"{workspace}: no runs/ folder to archive",
                           hint="run `unitdissect build` in the workspace first")
    out = Path(out) if out is not None else workspace / default_archive_name()
    config = load_config(workspace)
    site_out = config.site.out
    site = workspace / site_out
    if site.resolve() in (workspace.resolve(), *workspace.resolve().parents):
        raise ArchiveError(f"[site] out = {site_out!r} is the workspace itself or contains it; "
                           "give the site its own folder")
    # an archive carries the workspace's own files only: never a folder elsewhere (a private
    # one, say) that the config happens to name as its site
    packed_site = workspace.resolve() in site.resolve().parents and site.is_dir()
    if workspace.resolve() not in site.resolve().parents:
        logger.warning("[site] out = %r lies outside the workspace: the archive leaves the "
                       "site out (build it inside the workspace to archive it)", site_out)
    output_file(out, example="archive.tar.gz")
    with hold_folder(workspace, f"the workspace {workspace}"):  # no build writes meanwhile
        members: list[tuple[str, Path]] = []
        if (workspace / CONFIG_NAME).is_file():
            members.append((CONFIG_NAME, workspace / CONFIG_NAME))
        skip = out.resolve()
        members += _walk(runs, PurePosixPath("runs"), skip)
        if packed_site:
            members += _walk(site, PurePosixPath("site"), skip)
        elif workspace.resolve() in site.resolve().parents:
            logger.warning("no site folder %s: the archive has no site/", site)
        inputs = _inputs(workspace, config, dict(members), skip)
        taken = {rel for rel, _ in members}
        first = 1 if members and members[0][0] == CONFIG_NAME else 0  # the config stays first
        members = members[:first] + [m for m in inputs if m[0] not in taken] + members[first:]
        _check_size(members)

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
                "site": "site" if packed_site else None, "site_out": site_out,
                "inputs": sorted(rel for rel, _ in inputs),
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


def _size(n: int) -> str:
    """``n`` bytes for messages: ``16 GiB``, ``3.5 MiB``, ``512 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _check_member(archive: Path, member: tarfile.TarInfo) -> str:
    """The member's normalised name; raise ArchiveError naming it when it is unsafe."""
    name = member.name
    if has_control_characters(name) or has_control_characters(member.linkname):
        raise _unsafe(archive, name, "control characters in its name")
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
    elif member.issparse():
        raise _unsafe(archive, name, "a sparse file")
    elif not (member.isfile() or member.isdir()):
        raise _unsafe(archive, name, "not a regular file, folder or link")
    return str(PurePosixPath(name))


class _Budget:
    """Counts members and unpacked bytes against ``MAX_MEMBERS`` and ``MAX_UNPACKED_BYTES``."""

    def __init__(self, archive: Path) -> None:
        self.archive, self.members, self.bytes = archive, 0, 0

    def member(self, member: tarfile.TarInfo) -> None:
        """Count one member (its header's size: what it unpacks to) before it is read."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise ArchiveError(f"{self.archive}: more than {MAX_MEMBERS:,} members; "
                               "refusing the archive")
        self.spend(max(member.size, 0))

    def spend(self, n: int) -> None:
        """Count ``n`` unpacked bytes."""
        self.bytes += n
        if self.bytes > MAX_UNPACKED_BYTES:
            raise ArchiveError(f"{self.archive}: unpacks to more than "
                               f"{_size(MAX_UNPACKED_BYTES)}; refusing the archive")


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

@dataclass
class _Scan:
    """What ``_scan`` found: the hash and size of each regular file, the bytes of manifest
    candidates, and the links (which have no content to hash)."""

    hashes: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)


def _scan(archive: Path) -> _Scan:
    """Check every member, and the archive's limits, reading it to its end."""
    found = _Scan()
    hashes, manifests, links = found.hashes, found.manifests, found.links
    seen: set[str] = set()
    budget = _Budget(archive)
    with _open(archive) as tar:
        try:
            for member in tar:
                budget.member(member)
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
                hashes[name], found.sizes[name] = sha.hexdigest(), member.size
                if keep:
                    manifests[name] = b"".join(chunks)
            # to the end: gzip checks its CRC and length there; what follows the tar counts
            while block := tar.fileobj.read(_CHUNK):
                budget.spend(len(block))
        except ArchiveError:
            raise
        except _READ_ERRORS as e:
            raise ArchiveError(f"{archive}: corrupt archive ({_one_line(e)})") from None
    return found


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
    scan = _scan(archive)  # every member and the limits are checked before anything is written
    root, manifest = _read_manifest(archive, scan.manifests)
    wanted = sum(size for name, size in scan.sizes.items() if name.startswith(root + "/")
                 and (include is None or include(name[len(root) + 1:])))
    free = _free_bytes(dest)
    if wanted > free:
        raise ArchiveError(f"{archive}: extracting needs {_size(wanted)}, but {dest} has "
                           f"{_size(free)} free; refusing to fill the disk")
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


def _free_bytes(dest: Path) -> int:
    """Free space where ``dest`` is, or would be created."""
    here = Path(os.path.abspath(dest))
    while not here.exists() and here != here.parent:
        here = here.parent
    return shutil.disk_usage(here).free


def verify_archive(archive: str | Path, rerun: bool = False,
                   log: Callable[[str], None] = lambda s: None,
                   trust: bool = False) -> VerifyReport:
    """Check every file of an archive against its manifest; with ``rerun``, rebuild its config
    in a temporary workspace and compare the result files within ``RTOL`` / ``ATOL``.

    The rebuild reads and writes only inside that workspace; a config path that leaves it is
    refused, and so is a model or segmenter spec that imports Python, unless ``trust``.
    """
    archive = Path(archive)
    scan = _scan(archive)
    hashes, links = scan.hashes, scan.links
    root, manifest = _read_manifest(archive, scan.manifests)
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
        report.rerun, report.rerun_files = _rerun(archive, root, log, trust)
    return report


def _read_config(archive: Path, root: str) -> bytes | None:
    """The bytes of the archive's ``unitdissect.toml`` (None when it has none); every member
    up to it is checked (``_scan`` has checked them all already)."""
    with _open(archive) as tar:
        try:
            for member in tar:
                name = _check_member(archive, member)
                if name == f"{root}/{CONFIG_NAME}" and member.isfile():
                    if member.size > MAX_CONFIG_BYTES:
                        raise ArchiveError(f"{archive}: {name} is larger than "
                                           f"{_size(MAX_CONFIG_BYTES)}; not a config")
                    return tar.extractfile(member).read()
        except ArchiveError:
            raise
        except _READ_ERRORS as e:
            raise ArchiveError(f"{archive}: corrupt archive ({_one_line(e)})") from None
    return None


def _rerun_config(archive: Path, root: str, rebuilt: Path, log: Callable[[str], None]
                  ) -> tuple[WorkspaceConfig, str | None]:
    """The archived config (or the demo config), parsed; and its text, if the archive has one."""
    data = _read_config(archive, root)
    if data is None:
        log("no unitdissect.toml in the archive: rebuilding the demo config")
        return parse_config(DEMO_CONFIG, "<demo config>"), None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArchiveError(f"{archive}: {root}/{CONFIG_NAME} is not UTF-8 text "
                           f"({_one_line(e)})") from None
    return parse_config(text, f"{root}/{CONFIG_NAME}", rebuilt / CONFIG_NAME), text


def _check_rerun(archive: Path, config: WorkspaceConfig, workspace: Path | None,
                 trust: bool) -> None:
    """Refuse, in one line, a config whose paths leave ``workspace`` or that would run code
    without ``trust``."""
    what = f"{archive}: refusing to rerun"
    try:
        check_confined(config, workspace, what)
        check_trusted(config, trust, what)
    except ConfigError as e:
        raise ArchiveError(str(e), hint=e.hint) from None


def _under(path: str, folders: set[str]) -> bool:
    """Whether the POSIX ``path`` is one of ``folders`` or inside one."""
    return any(path == f or path.startswith(f + "/") for f in folders)


def _rerun(archive: Path, root: str, log: Callable[[str], None], trust: bool
           ) -> tuple[list[Difference], int]:
    """Rebuild the archived config in a temporary workspace; compare its result files.

    The config is checked before anything but itself is read: every path it names must stay
    inside the workspace, and specs that import Python need ``trust``. Then the result files
    and the inputs the config names are extracted into ``archived/``, the unpacked workspace
    that relative paths resolve against (and the current folder during the build), and the
    build writes into ``rebuild/``.
    """
    from . import pipeline

    with tempfile.TemporaryDirectory(prefix="unitdissect-verify-") as tmp:
        archived, rebuilt = Path(tmp).absolute() / "archived", Path(tmp).absolute() / "rebuild"
        config, text = _rerun_config(archive, root, rebuilt, log)
        _check_rerun(archive, config, None, trust)
        inputs = {archive_path(item) for item in carried_inputs(config)}
        extract_archive(archive, archived,
                        include=lambda p: p == CONFIG_NAME or _is_result(PurePosixPath(p))
                        or _under(p, inputs))
        _check_rerun(archive, config, archived, trust)  # extraction makes no links; to be sure
        rebuilt.mkdir()
        if text is not None:
            (rebuilt / CONFIG_NAME).write_text(text, encoding="utf-8")
        for spec in code_specs(config):  # only reached with trust
            log(f"running the archive's code (--trust): {spec}")
        log(f"rebuilding in {rebuilt} ...")
        with working_directory(archived):
            pipeline.build(rebuilt, config, progress=False, log=log, root=archived)
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

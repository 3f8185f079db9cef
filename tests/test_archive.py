"""Tests of workspace archives: ``unitdissect archive`` and ``unitdissect verify``."""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from builder.cli import main
from builder.errors import ArchiveError
from builder.workspace import archive as A

UNITS = "unit,label,iou,threshold\n0,tree,0.25,1.5\n1,sky,0.125,inf\n"
CONFIG = '[dataset]\nsources = ["toyworld:n=12,size=32"]\n\n[site]\ntitle = "tiny"\n'


def make_workspace(root: Path) -> Path:
    """A fake built workspace: config, a run, a checkpoint, a dataset cache, a site."""
    root.mkdir()
    (root / "unitdissect.toml").write_text(CONFIG)
    layer = root / "runs" / "x" / "layers" / "l"
    layer.mkdir(parents=True)
    (layer / "units.csv").write_text(UNITS)
    np.save(layer / "iou.npy", np.array([[0, 0.25], [0, 0.125]], dtype=np.float32))
    (root / "runs" / "build-manifest.json").write_text('{"format": "unitdissect-build"}\n')
    (root / "runs" / "x" / "checkpoints").mkdir()
    (root / "runs" / "x" / "checkpoints" / "abc.pt").write_bytes(b"big")
    (root / "runs" / "x" / ".units.csv.123.tmp").write_text("half")
    (root / "data" / "datasets").mkdir(parents=True)
    (root / "data" / "datasets" / "shard.arrow").write_bytes(b"big")
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<h1>tiny</h1>")
    return root


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None] | None = None,
            add: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> Path:
    """Copy an archive, replacing (bytes) or dropping (None) members and adding others."""
    change = change or {}
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else None
            data = change.get(m.name, data) if m.name in change else data
            if m.name in change and change[m.name] is None:
                continue
            if data is not None:
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
        for info, data in add:
            if data is not None:
                info.size = len(data)
            tout.addfile(info, io.BytesIO(data) if data is not None else None)
    return dst


@pytest.fixture
def built(tmp_path) -> Path:
    ws = make_workspace(tmp_path / "ws")
    return A.create_archive(ws, tmp_path / "a.tar.gz").path


def test_archive_contents_and_manifest(built):
    files = members(built)
    root = "a"
    assert set(files) == {f"{root}/{p}" for p in (
        "unitdissect.toml", "runs/build-manifest.json", "runs/x/layers/l/units.csv",
        "runs/x/layers/l/iou.npy", "site/index.html", A.MANIFEST_NAME)}
    manifest = json.loads(files[f"{root}/{A.MANIFEST_NAME}"])
    assert manifest["format"] == "unitdissect-archive" and manifest["config"] == "unitdissect.toml"
    import hashlib

    assert manifest["files"]["runs/x/layers/l/units.csv"] == {
        "sha256": hashlib.sha256(UNITS.encode()).hexdigest(), "size": len(UNITS)}
    report = A.verify_archive(built)
    assert report.ok and report.files == 5 and report.root == root and report.problems() == []


def test_default_name_in_workspace(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    assert A.default_archive_name(dt.datetime(2026, 1, 2, 3, 4, 5)) == \
        "unitdissect-archive-20260102-030405.tar.gz"
    info = A.create_archive(ws)
    assert info.path.parent == ws and info.path.name.startswith("unitdissect-archive-")
    assert info.files == 5 and A.verify_archive(info.path).ok
    # an archive written inside runs/ does not contain itself
    inner = A.create_archive(ws, ws / "runs" / "self.tar.gz")
    assert not any(n.endswith("self.tar.gz") for n in members(inner.path))


def test_workspace_without_runs_or_with_site_around_it_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match="no runs/"):
        A.create_archive(tmp_path / "empty")
    ws = make_workspace(tmp_path / "ws")
    (ws / "unitdissect.toml").write_text(CONFIG.replace('title = "tiny"', 'out = "."'))
    with pytest.raises(ArchiveError, match="is the workspace itself"):
        A.create_archive(ws)


def test_tampered_missing_and_extra_members_are_named(built, tmp_path):
    units = "a/runs/x/layers/l/units.csv"
    extra = tarfile.TarInfo("a/runs/x/new.txt")
    stray = tarfile.TarInfo("elsewhere.txt")
    bad = rewrite(built, tmp_path / "bad.tar.gz",
                  change={units: UNITS.replace("0.25", "0.26").encode(),
                          "a/site/index.html": None},
                  add=[(extra, b"x"), (stray, b"y")])
    report = A.verify_archive(bad)
    assert not report.ok
    assert report.changed == ["runs/x/layers/l/units.csv"]
    assert report.missing == ["site/index.html"]
    assert report.extra == ["elsewhere.txt", "runs/x/new.txt"]
    assert "changed  runs/x/layers/l/units.csv  (sha256 differs)" in report.problems()


def _evil(kind: str) -> tarfile.TarInfo:
    if kind == "dotdot":
        return tarfile.TarInfo("a/../../evil")
    if kind == "absolute":
        return tarfile.TarInfo(str(Path(tempfile.gettempdir()) / "evil-abs"))
    info = tarfile.TarInfo("a/runs/evil")
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "relsymlink":
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "../outside"
    elif kind == "device":
        info.type = tarfile.CHRTYPE
    return info


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "relsymlink", "hardlink",
                                  "device"])
def test_unsafe_members_are_refused_by_name(built, tmp_path, monkeypatch, kind):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where --rerun would extract
    info = _evil(kind)
    data = b"pwned" if info.isfile() else None
    bad = rewrite(built, tmp_path / "evil.tar.gz", add=[(info, data)])
    before = sorted(p for p in tmp_path.parent.rglob("*") if "evil" in p.name)
    for call in (lambda: A.verify_archive(bad), lambda: A.verify_archive(bad, rerun=True),
                 lambda: A.extract_archive(bad, tmp_path / "out")):
        with pytest.raises(ArchiveError, match="unsafe member") as e:
            call()
        assert info.name in str(e.value) and "\n" not in str(e.value)
    after = sorted(p for p in tmp_path.parent.rglob("*") if "evil" in p.name)
    assert after == before  # only the archive itself
    assert not Path(tempfile.gettempdir(), "evil-abs").exists()
    assert list(scratch.iterdir()) == [] and not (tmp_path / "out").exists()


def test_links_inside_the_archive_are_not_extracted(built, tmp_path):
    link = tarfile.TarInfo("a/site/index.html")
    link.type, link.linkname = tarfile.SYMTYPE, "../unitdissect.toml"
    inner = tarfile.TarInfo("a/runs/also")
    inner.type, inner.linkname = tarfile.SYMTYPE, "build-manifest.json"
    bad = rewrite(built, tmp_path / "links.tar.gz", change={"a/site/index.html": None},
                  add=[(link, None), (inner, None)])
    report = A.verify_archive(bad)
    assert report.changed == ["site/index.html"] and report.extra == ["runs/also"]
    A.extract_archive(bad, tmp_path / "out")
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))
    assert (tmp_path / "out" / "runs" / "x" / "layers" / "l" / "units.csv").read_text() == UNITS


@pytest.mark.parametrize("content,match", [
    (None, "no such archive file"), (b"just some text\n", "not a readable .tar.gz"),
    ("truncated", "corrupt archive|not a unitdissect archive|not a readable"),
    ("no trailer", "corrupt archive")])
def test_missing_or_corrupt_archive_is_one_line(built, tmp_path, content, match):
    path = tmp_path / "broken.tar.gz"
    if content == "truncated":
        data = built.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif content == "no trailer":  # every member reads, but gzip's CRC and length are cut
        path.write_bytes(built.read_bytes()[:-4])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ArchiveError, match=match) as e:
        A.verify_archive(path)
    assert "\n" not in str(e.value)


def test_archive_without_manifest_is_refused(built, tmp_path):
    bad = rewrite(built, tmp_path / "nomanifest.tar.gz", change={f"a/{A.MANIFEST_NAME}": None})
    with pytest.raises(ArchiveError, match="not a unitdissect archive"):
        A.verify_archive(bad)


def test_cli_archive_and_verify(tmp_path, capsys, monkeypatch):
    ws = make_workspace(tmp_path / "ws")
    monkeypatch.chdir(ws)
    assert main(["archive", "--out", "out.tar.gz"]) == 0
    assert "wrote out.tar.gz (5 files" in capsys.readouterr().out
    assert main(["verify", "out.tar.gz"]) == 0
    assert capsys.readouterr().out.startswith("ok  out.tar.gz: 5 files match")
    bad = rewrite(ws / "out.tar.gz", tmp_path / "bad.tar.gz",
                  change={"out/runs/x/layers/l/iou.npy": b"garbage"})
    assert main(["verify", str(bad)]) == 1
    assert "changed  runs/x/layers/l/iou.npy" in capsys.readouterr().out
    for argv, needle in ((["verify", "nope.tar.gz"], "no such archive file"),
                         (["archive", "--workspace", str(tmp_path / "none")], "no such folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) <= 2 and "Traceback" not in err


def write_results(root: Path, units: str, iou: np.ndarray, curve: str | None) -> Path:
    """Result files of one run (and its ablation unless ``curve`` is None)."""
    layer = root / "runs" / "x" / "layers" / "l"
    layer.mkdir(parents=True)
    (layer / "units.csv").write_text(units)
    np.save(layer / "iou.npy", iou)
    if curve is not None:
        ablation = root / "runs" / "x" / "ablation" / "l"
        ablation.mkdir(parents=True)
        (ablation / "curves.csv").write_text(curve)
        np.save(ablation / "single_unit.npy", iou * 2)
    (root / "runs" / "x" / "manifest.json").write_text(str(root))  # not a result file
    return root


def test_compare_results_within_tolerance(tmp_path):
    iou = np.array([[0, 0.25], [0, 0.125]], dtype=np.float32)
    a = write_results(tmp_path / "a", UNITS, iou, "class,n_removed,acc\ncat,1,0.5\n")
    b = write_results(tmp_path / "b", "unit,label,iou,threshold\n0,tree,0.2500001,1.5\n"
                      "1,sky,0.125,inf\n", iou + 1e-7, "class,n_removed,acc\ncat,1,5e-1\n")
    assert A.result_files(a) == ["runs/x/ablation/l/curves.csv",
                                 "runs/x/ablation/l/single_unit.npy",
                                 "runs/x/layers/l/iou.npy", "runs/x/layers/l/units.csv"]
    assert A.compare_results(a, b) == []


def test_compare_results_names_each_differing_file(tmp_path):
    iou = np.array([[0, 0.25], [0, 0.125]], dtype=np.float32)
    a = write_results(tmp_path / "a", UNITS, iou, "class,n_removed,acc\ncat,1,0.5\n")
    b = write_results(tmp_path / "b", UNITS.replace("tree", "bush").replace("inf", "2.0"),
                      iou * 1.01, "class,n_removed,acc\ncat,1,0.5\ndog,1,0.5\n")
    (b / "runs" / "x" / "layers" / "l2").mkdir()
    np.save(b / "runs" / "x" / "layers" / "l2" / "iou.npy", iou)
    found = {d.path: d.reason for d in A.compare_results(a, b)}
    assert set(found) == {"runs/x/layers/l/units.csv", "runs/x/layers/l/iou.npy",
                          "runs/x/ablation/l/curves.csv", "runs/x/ablation/l/single_unit.npy",
                          "runs/x/layers/l2/iou.npy"}
    assert found["runs/x/layers/l/units.csv"].startswith("row 1, column label: 'tree'")
    assert "and 1 more cells" in found["runs/x/layers/l/units.csv"]
    assert found["runs/x/layers/l/iou.npy"].startswith("2 of 4 values differ")
    assert found["runs/x/ablation/l/curves.csv"] == "1 rows archived, 2 rebuilt"
    assert found["runs/x/layers/l2/iou.npy"] == "not in the archive"
    np.save(b / "runs" / "x" / "layers" / "l" / "iou.npy", iou[:1])
    assert "shape [2, 2] archived, [1, 2] rebuilt" in str(
        [d for d in A.compare_results(a, b) if d.path.endswith("l/iou.npy")][0])


def test_rerun_rebuilds_the_archived_config_and_compares(built, tmp_path, monkeypatch):
    """The rebuild itself is faked (a real one is slow): it writes slightly different results."""
    from builder.workspace import pipeline

    seen = {}

    def fake_build(workspace, config, force=False, progress=True, log=lambda s: None, root=None):
        seen["workspace"], seen["sources"] = Path(workspace), config.dataset.sources
        write_results(Path(workspace), UNITS.replace("0.125", "0.1250000001"),
                      np.array([[0, 0.25], [0, 0.125]], dtype=np.float32), None)

    monkeypatch.setattr(pipeline, "build", fake_build)
    report = A.verify_archive(built, rerun=True)
    assert seen["sources"] == ["toyworld:n=12,size=32"]  # the archived config, not the demo
    assert not seen["workspace"].exists()  # the temporary workspace is gone
    assert report.ok and report.rerun == [] and report.rerun_files == 2

    def fake_bad(workspace, config, **kw):
        write_results(Path(workspace), UNITS.replace("0.25", "0.3"),
                      np.zeros((2, 2), dtype=np.float32), None)

    monkeypatch.setattr(pipeline, "build", fake_bad)
    report = A.verify_archive(built, rerun=True)
    assert [d.path for d in report.rerun] == ["runs/x/layers/l/iou.npy",
                                              "runs/x/layers/l/units.csv"]
    assert not report.ok and report.problems()[0].startswith("rerun    runs/x/layers/l/iou.npy")

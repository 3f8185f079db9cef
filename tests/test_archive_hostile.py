"""Someone else's archive: ``verify --rerun`` confined to its temporary folder, no code run
unless trusted, and hostile archives (escaping config paths, code specs, tar bombs, special
members, control characters) each refused in one line with nothing written outside."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections import namedtuple
from dataclasses import fields
from pathlib import Path

import pytest

from builder.cli import main
from builder.errors import ArchiveError, ConfigError
from builder.workspace import archive as A
from builder.workspace import config as C
from builder.workspace import confine
from builder.workspace import pipeline
from test_archive import make_workspace, members, rewrite

#: A config with every path-valued key set to something safe; ``hostile`` swaps one value.
SAFE = {"source": "toyworld:n=12,size=32", "dissect_model": "demo:classifier",
        "dissect_weights": None, "dissect_dataset": None, "classes": None,
        "gan_model": "demo:generator", "gan_weights": None, "segmenter": "demo:segmenter",
        "site_out": "site"}


def config_text(**values: str | None) -> str:
    """A valid config (one [[dissect]], [[ablate]] and [[gan]] entry) with ``values``."""
    v = {**SAFE, **values}
    q = json.dumps  # a JSON string is a TOML basic string

    def opt(key: str, value: str | None) -> str:
        return f"{key} = {q(value)}\n" if value is not None else ""

    return (f'name = "hostile"\n[dataset]\nsources = [{q(v["source"])}]\n\n'
            f'[[dissect]]\nname = "c"\nmodel = {q(v["dissect_model"])}\n'
            f'layers = ["features.conv5_3"]\n' + opt("weights", v["dissect_weights"])
            + opt("dataset", v["dissect_dataset"]) +
            '\n[[ablate]]\nrun = "c"\nlayer = "features.conv5_3"\n' + opt("classes", v["classes"])
            + f'\n[[gan]]\nname = "g"\nmodel = {q(v["gan_model"])}\nlayers = ["layer4"]\n'
            f'segmenter = {q(v["segmenter"])}\n' + opt("weights", v["gan_weights"])
            + f'\n[site]\nout = {q(v["site_out"])}\n')


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (what a refused rerun must leave as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """Where ``--rerun`` makes its temporary folder; ``pipeline.build`` must not be reached."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))

    def no_build(*args, **kwargs):
        raise AssertionError("the build ran")

    monkeypatch.setattr(pipeline, "build", no_build)
    return folder


def archive_of(tmp_path: Path, text: str, files: dict[str, str] = {}) -> Path:
    """An archive of a fake built workspace whose config is ``text``, with extra files."""
    ws = make_workspace(tmp_path / "ws")
    (ws / "unitdissect.toml").write_text(text)
    for rel, content in files.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(content)
    return A.create_archive(ws, tmp_path / "a.tar.gz").path


def refused(call, *needles: str) -> str:
    """Run ``call``; it must raise ArchiveError, in one line, with every needle in it."""
    with pytest.raises(ArchiveError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# -- config paths that leave the workspace --------------------------------------------------------

ESCAPES = [  # (field, value with OUT for an absolute folder outside, the key named)
    ("source", "broden:OUT/broden", "[dataset] sources[0]"),
    ("source", "broden:../broden", "[dataset] sources[0]"),
    ("source", "images:OUT/photos", "[dataset] sources[0]"),
    ("source", "OUT/broden", "[dataset] sources[0]"),
    ("source", "hf:ade20k?path=OUT/ade", "[dataset] sources[0]"),
    ("source", "hf:pascal-context?path=local&labels=../labels.json", "[dataset] sources[0]"),
    ("source", "hf:ade20k?repo=../../elsewhere", "[dataset] sources[0]"),
    ("source", "hf:ade20k?cache_dir=OUT/cache", "[dataset] sources[0]"),
    ("dissect_model", "OUT/m.py:build", "[[dissect]] model"),
    ("dissect_model", "../m.py:build", "[[dissect]] model"),
    ("dissect_weights", "OUT/w.safetensors", "[[dissect]] weights"),
    ("dissect_weights", "../w.safetensors", "[[dissect]] weights"),
    ("dissect_weights", "sub/../../w.pth", "[[dissect]] weights"),
    ("dissect_weights", "~/w.pth", "[[dissect]] weights"),
    ("dissect_dataset", "OUT/data", "[[dissect]] dataset"),
    ("dissect_dataset", "../data", "[[dissect]] dataset"),
    ("classes", "OUT/classes.txt", "[[ablate]] classes"),
    ("classes", "../classes.txt", "[[ablate]] classes"),
    ("gan_model", "progan:OUT/g.pth", "[[gan]] model"),
    ("gan_model", "stylegan2:../g.pt", "[[gan]] model"),
    ("gan_model", "../g.py:make", "[[gan]] model"),
    ("gan_weights", "OUT/g.safetensors", "[[gan]] weights"),
    ("gan_weights", "../g.safetensors", "[[gan]] weights"),
    ("segmenter", "hf:OUT/segformer", "[[gan]] segmenter"),
    ("segmenter", "hf:../segformer", "[[gan]] segmenter"),
    ("site_out", "OUT/site", "[site] out"),
    ("site_out", "../site", "[site] out"),
]


@pytest.mark.parametrize("field,value,key", ESCAPES,
                         ids=[f"{f}={v}" for f, v, _ in ESCAPES])
def test_rerun_refuses_every_config_path_that_leaves_the_workspace(
        tmp_path, scratch, field, value, key):
    outside = tmp_path / "outside"
    value = value.replace("OUT", str(outside))
    archive = archive_of(tmp_path, config_text(**{field: value}))
    assert A.verify_archive(archive).ok  # the hashes are fine; only the rerun is refused
    before = snapshot(tmp_path)
    message = refused(lambda: A.verify_archive(archive, rerun=True),
                      "refusing to rerun", f"{key} = {value!r}")
    assert "absolute" in message or "leaves the workspace" in message or "'~'" in message
    refused(lambda: A.verify_archive(archive, rerun=True, trust=True), key)  # trust or not
    assert snapshot(tmp_path) == before and list(scratch.iterdir()) == []
    assert not outside.exists() and not (tmp_path / "site").exists()


def test_the_issue_case_site_out_absolute_through_the_cli(tmp_path, scratch, capsys):
    """``[site] out = "/tmp/..."``: once rebuilt into that path, now refused before the build."""
    target = Path(tempfile.gettempdir()).parent / "unitdissect-hostile-site"
    archive = archive_of(tmp_path, 'name = "x"\n[site]\nout = ' + json.dumps(str(target)) + "\n")
    assert main(["verify", "--rerun", str(archive)]) == 2
    err = capsys.readouterr().err
    assert f"[site] out = {str(target)!r}: an absolute path" in err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err  # message + hint
    assert not target.exists() and list(scratch.iterdir()) == []


def test_every_problem_is_named_at_once(tmp_path, scratch):
    archive = archive_of(tmp_path, config_text(dissect_weights="/w.pth", site_out="../s",
                                               classes="~/c.txt"))
    message = refused(lambda: A.verify_archive(archive, rerun=True),
                      "[[dissect]] weights", "[site] out", "[[ablate]] classes")
    assert "(entry 'c')" in message and "(entry 'c/features.conv5_3')" in message


def test_config_with_control_characters_in_a_path_is_refused(tmp_path, scratch):
    archive = archive_of(tmp_path, config_text(dissect_weights="w\x1b[2J.pth"))
    refused(lambda: A.verify_archive(archive, rerun=True), "[[dissect]] weights",
            "control characters")


def test_an_oversized_or_binary_config_is_refused(tmp_path, scratch, monkeypatch):
    archive = archive_of(tmp_path, config_text())
    monkeypatch.setattr(A, "MAX_CONFIG_BYTES", 100)
    refused(lambda: A.verify_archive(archive, rerun=True), "a/unitdissect.toml is larger than "
            "100 bytes")
    monkeypatch.setattr(A, "MAX_CONFIG_BYTES", 1 << 20)
    binary = rewrite(archive, tmp_path / "binary.tar.gz",
                     change={"a/unitdissect.toml": b"name = '\xff'\n"})
    refused(lambda: A.verify_archive(binary, rerun=True), "is not UTF-8 text")
    assert list(scratch.iterdir()) == []


# -- code in the config ---------------------------------------------------------------------------

#: A model file that leaves a mark when it is imported.
MARKING = ("import os, pathlib\n"
           "pathlib.Path(os.environ['UNITDISSECT_TEST_MARK']).write_text('ran')\n"
           "import torch\n\n"
           "def build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))\n")


@pytest.mark.parametrize("values,named", [
    ({"dissect_model": "m.py:build"}, ["[[dissect]] model = 'm.py:build'"]),
    ({"dissect_model": "mine.models:build(width=8)"},
     ["[[dissect]] model = 'mine.models:build(width=8)'"]),
    ({"gan_model": "g.py:make"}, ["[[gan]] model = 'g.py:make'"]),
    ({"segmenter": "mine.segment:Segmenter"}, ["[[gan]] segmenter = 'mine.segment:Segmenter'"]),
    ({"dissect_model": "m.py:build", "gan_model": "os:system"},
     ["[[dissect]] model = 'm.py:build'", "[[gan]] model = 'os:system'"]),
])
def test_code_specs_need_trust(tmp_path, scratch, monkeypatch, capsys, values, named):
    mark = tmp_path / "mark"
    monkeypatch.setenv("UNITDISSECT_TEST_MARK", str(mark))
    archive = archive_of(tmp_path, config_text(**values), {"m.py": MARKING, "g.py": MARKING})
    message = refused(lambda: A.verify_archive(archive, rerun=True),
                      "would run Python code", *named)
    assert "demo:" not in message  # the shipped models and segmenter are data, not code
    assert main(["verify", "--rerun", str(archive)]) == 2
    err = capsys.readouterr().err
    assert all(n in err for n in named) and "--trust" in err and "Traceback" not in err
    assert not mark.exists() and list(scratch.iterdir()) == []


def test_trusted_code_runs_from_the_unpacked_workspace(tmp_path, scratch, monkeypatch):
    """The issue's second case: the model file travels in the archive, relative paths resolve
    in the unpacked workspace (and so does the current folder), and only with --trust."""
    monkeypatch.setenv("UNITDISSECT_TEST_MARK", str(tmp_path / "mark"))
    text = config_text(dissect_model="m.py:build", dissect_weights="weights/w.pth",
                       classes="classes.txt")
    archive = archive_of(tmp_path, text, {"m.py": MARKING, "weights/w.pth": "tensors",
                                          "classes.txt": "a\nb\n", "unrelated.py": "x = 1\n"})
    files = members(archive)
    assert {"a/m.py", "a/weights/w.pth", "a/classes.txt"} <= set(files)
    assert "a/unrelated.py" not in files
    manifest = json.loads(files[f"a/{A.MANIFEST_NAME}"])
    assert manifest["inputs"] == ["classes.txt", "m.py", "weights/w.pth"]
    assert set(manifest["inputs"]) <= set(manifest["files"])  # hashed like every other file
    seen = {}

    def fake_build(workspace, config, force=False, progress=True, log=lambda s: None, root=None):
        seen.update(workspace=Path(workspace), root=Path(root), cwd=Path.cwd(),
                    model=(Path(root) / "m.py").read_text(),
                    weights=(Path(root) / "weights/w.pth").read_text())
        assert not (Path(root) / "unrelated.py").exists()
        shutil.copytree(Path(root) / "runs", Path(workspace) / "runs")  # the same results

    monkeypatch.setattr(pipeline, "build", fake_build)
    report = A.verify_archive(archive, rerun=True, trust=True)
    assert report.ok and report.rerun is not None
    assert seen["root"].parent == seen["workspace"].parent  # both in the temporary folder
    assert scratch in seen["root"].parents and seen["cwd"] == seen["root"]
    assert seen["model"] == MARKING and seen["weights"] == "tensors"
    assert list(scratch.iterdir()) == [] and not (tmp_path / "mark").exists()
    # a changed model file is reported like any other member
    tampered = rewrite(archive, tmp_path / "t.tar.gz", change={"a/m.py": b"import os\n"})
    assert A.verify_archive(tampered).changed == ["m.py"]


def test_trust_without_rerun_is_a_usage_error(tmp_path, capsys):
    archive = archive_of(tmp_path, config_text())
    assert main(["verify", "--trust", str(archive)]) == 2
    assert "--trust applies to --rerun only" in capsys.readouterr().err


# -- resource limits --------------------------------------------------------------------------

def _gzip_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_tar_bomb_is_refused_before_anything_is_written(tmp_path, scratch, monkeypatch):
    monkeypatch.setattr(A, "MAX_UNPACKED_BYTES", 3 << 20)
    zeros = b"\0" * (1 << 20)
    entries = [(tarfile.TarInfo(f"a/runs/x/layers/l/part{i}.npy"), zeros) for i in range(8)]
    manifest = json.dumps({"format": A.ARCHIVE_FORMAT, "files": {}}).encode()
    bomb = _gzip_tar(tmp_path / "bomb.tar.gz",
                     [(tarfile.TarInfo(f"a/{A.MANIFEST_NAME}"), manifest), *entries])
    assert bomb.stat().st_size < 64 << 10  # 8 MiB in under 64 KiB
    before = snapshot(tmp_path)
    for call in (lambda: A.verify_archive(bomb), lambda: A.verify_archive(bomb, rerun=True),
                 lambda: A.extract_archive(bomb, tmp_path / "out")):
        refused(call, "unpacks to more than 3 MiB", "refusing the archive")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_header_claiming_gigabytes_is_refused_at_the_default_limit(tmp_path):
    """The limit is checked on each member's header, before its data is read."""
    info = tarfile.TarInfo("a/runs/huge.npy")
    info.size = A.MAX_UNPACKED_BYTES + 1
    bomb = tmp_path / "huge.tar.gz"
    bomb.write_bytes(gzip.compress(info.tobuf(tarfile.PAX_FORMAT) + b"\0" * 4096))
    refused(lambda: A.verify_archive(bomb), "unpacks to more than 16 GiB")


def test_data_after_the_end_of_the_tar_counts_too(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws")
    archive = A.create_archive(ws, tmp_path / "a.tar.gz").path
    padded = tmp_path / "padded.tar.gz"
    padded.write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()) + b"\0" * (4 << 20)))
    assert A.verify_archive(padded).ok  # within the default limit: just padding
    monkeypatch.setattr(A, "MAX_UNPACKED_BYTES", 1 << 20)
    refused(lambda: A.verify_archive(padded), "unpacks to more than 1 MiB")


def test_too_many_members_is_refused(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws")
    archive = A.create_archive(ws, tmp_path / "a.tar.gz").path  # 6 members
    monkeypatch.setattr(A, "MAX_MEMBERS", 5)
    refused(lambda: A.verify_archive(archive), "more than 5 members", "refusing the archive")
    with pytest.raises(ArchiveError, match="over the limits that `unitdissect verify` reads"):
        A.create_archive(ws, tmp_path / "b.tar.gz")  # nor is one written that verify refuses
    assert not (tmp_path / "b.tar.gz").exists()


def test_extraction_that_would_fill_the_disk_is_refused(tmp_path, scratch, monkeypatch):
    archive = archive_of(tmp_path, config_text())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(A.shutil, "disk_usage", lambda path: usage(100, 90, 10))
    assert A.verify_archive(archive).ok  # hashing writes nothing
    for call in (lambda: A.verify_archive(archive, rerun=True),
                 lambda: A.extract_archive(archive, tmp_path / "out")):
        refused(call, "has 10 bytes free", "refusing to fill the disk")
    assert not (tmp_path / "out").exists() and list(scratch.iterdir()) == []


# -- special members and names ----------------------------------------------------------------

def _special(kind: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo("a/runs/special")
    if kind == "fifo":
        info.type = tarfile.FIFOTYPE
    elif kind == "block":
        info.type = tarfile.BLKTYPE
    elif kind == "gnu-sparse":
        info.type = tarfile.GNUTYPE_SPARSE
        return info, None
    elif kind == "pax-sparse":
        info.pax_headers = {"GNU.sparse.major": "0", "GNU.sparse.minor": "1",
                            "GNU.sparse.map": "0,1", "GNU.sparse.size": "1000",
                            "GNU.sparse.name": "a/runs/special"}
        return info, b"x"
    elif kind == "multivolume":
        info.type = b"M"  # GNU tar's multi-volume continuation
        return info, b"x"
    elif kind == "unknown":
        info.type = b"Z"
        return info, b"x"
    return info, None


@pytest.mark.parametrize("kind", ["fifo", "block", "gnu-sparse", "pax-sparse", "multivolume",
                                  "unknown"])
def test_special_members_are_refused(tmp_path, scratch, kind):
    ws = make_workspace(tmp_path / "ws")
    built = A.create_archive(ws, tmp_path / "a.tar.gz").path
    bad = rewrite(built, tmp_path / "special.tar.gz", add=[_special(kind)])
    before = snapshot(tmp_path)
    for call in (lambda: A.verify_archive(bad), lambda: A.verify_archive(bad, rerun=True),
                 lambda: A.extract_archive(bad, tmp_path / "out")):
        refused(call, "unsafe member 'a/runs/special'")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["a/runs/new\nline", "a/runs/\x1b[31mred", "a/runs/del\x7f",
                                  "a/runs/c1\x85", "a/runs/tab\there", "a/runs/bytes\udcff"])
def test_names_with_control_characters_are_refused(tmp_path, scratch, name):
    ws = make_workspace(tmp_path / "ws")
    built = A.create_archive(ws, tmp_path / "a.tar.gz").path
    bad = rewrite(built, tmp_path / "names.tar.gz", add=[(tarfile.TarInfo(name), b"x")])
    before = snapshot(tmp_path)
    for call in (lambda: A.verify_archive(bad), lambda: A.verify_archive(bad, rerun=True),
                 lambda: A.extract_archive(bad, tmp_path / "out")):
        message = refused(call, "control characters in its name", repr(name))
        assert all(c.isprintable() for c in message)
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_link_target_with_control_characters_is_refused(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    built = A.create_archive(ws, tmp_path / "a.tar.gz").path
    link = tarfile.TarInfo("a/runs/link")
    link.type, link.linkname = tarfile.SYMTYPE, "x\n/etc/passwd"
    bad = rewrite(built, tmp_path / "link.tar.gz", add=[(link, None)])
    refused(lambda: A.verify_archive(bad), "unsafe member 'a/runs/link'", "control characters")


# -- what an archive carries --------------------------------------------------------------------

def test_inputs_outside_the_workspace_are_not_carried(tmp_path, caplog):
    secret = tmp_path / "secret.pth"
    secret.write_text("private")
    ws = make_workspace(tmp_path / "ws")
    (ws / "link.pth").symlink_to(secret)
    (ws / "unitdissect.toml").write_text(config_text(dissect_weights=str(secret),
                                                     gan_weights="link.pth"))
    with caplog.at_level("WARNING"):
        archive = A.create_archive(ws, tmp_path / "a.tar.gz").path
    assert not any(b"private" in data for data in members(archive).values())
    warned = caplog.text
    assert "not archived (an absolute path): [[dissect]] weights" in warned
    assert "not archived (resolves outside the workspace" in warned and "[[gan]] weights" in warned
    assert json.loads(members(archive)[f"a/{A.MANIFEST_NAME}"])["inputs"] == []


def test_a_local_segmenter_folder_is_carried(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    (ws / "seg").mkdir()
    (ws / "seg" / "config.json").write_text("{}")
    (ws / "seg" / "model.safetensors").write_text("tensors")
    (ws / "unitdissect.toml").write_text(config_text(segmenter="hf:seg"))
    archive = A.create_archive(ws, tmp_path / "a.tar.gz").path
    manifest = json.loads(members(archive)[f"a/{A.MANIFEST_NAME}"])
    assert manifest["inputs"] == ["seg/config.json", "seg/model.safetensors"]
    assert A.verify_archive(archive).ok


# -- the confinement rule itself, and build --confine ---------------------------------------------

#: String-valued config keys that name no file (the rest are checked by ``confine``).
NOT_PATHS = {"name", "device", "method", "threshold_on", "upsampling", "union", "split", "run",
             "rank_split", "eval_split", "strategy", "title", "concepts"}
CHECKED = {"sources", "model", "layers", "weights", "dataset", "layer", "classes", "segmenter",
           "out"}


def test_every_string_key_of_the_config_is_classified():
    """A new string key must be added to ``confine.named_paths`` or to NOT_PATHS here."""
    keys = {f.name for cls in (C.WorkspaceConfig, *C._SECTIONS.values()) for f in fields(cls)
            if "str" in str(f.type) and f.name != "path"}
    assert keys == NOT_PATHS | CHECKED


def test_path_problems_follow_symbolic_links(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "w.pth").symlink_to(tmp_path / "elsewhere.pth")
    (ws / "inside.pth").write_text("x")
    config = C.parse_config(config_text(dissect_weights="w.pth", gan_weights="inside.pth"))
    assert confine.path_problems(config) == []  # as written, both stay inside
    assert confine.path_problems(config, ws) == [
        "[[dissect]] weights = 'w.pth' (entry 'c'): resolves outside the workspace (through a "
        "symbolic link)"]


def test_plain_names_and_the_workspace_itself(tmp_path):
    config = C.parse_config(config_text(site_out="."))
    assert confine.path_problems(config) == ["[site] out = '.': the workspace itself"]
    config.dissect[0].layers = ["../x"]
    assert "[[dissect]] layers[0] = '../x' (entry 'c'): not a plain folder name" in \
        confine.path_problems(config)
    assert confine.code_specs(C.parse_config(config_text())) == []


def test_build_confine_refuses_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "build", lambda *a, **k: pytest.fail("the build ran"))
    monkeypatch.setattr(pipeline, "dry_run", lambda *a, **k: pytest.fail("the dry run ran"))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "unitdissect.toml").write_text(config_text(site_out=str(tmp_path / "out")))
    for extra in ([], ["--dry-run"]):
        assert main(["build", "--confine", "--workspace", str(ws), *extra]) == 2
        err = capsys.readouterr().err
        assert f"--confine: [site] out = {str(tmp_path / 'out')!r}: an absolute path" in err
        assert len(err.strip().splitlines()) == 2
    (ws / "unitdissect.toml").write_text(config_text(dissect_model="m.py:build"))
    assert main(["build", "--confine", "--workspace", str(ws)]) == 2
    assert "--confine: the config would run Python code: [[dissect]] model = 'm.py:build'" in \
        capsys.readouterr().err
    assert main(["build", "--trust", "--workspace", str(ws)]) == 2
    assert "--trust applies to --confine only" in capsys.readouterr().err
    ran = {}
    monkeypatch.setattr(pipeline, "dry_run", lambda config, workspace: ran.update(
        cwd=Path.cwd(), workspace=workspace) or pipeline.DryRunReport())
    assert main(["build", "--confine", "--trust", "--dry-run", "--workspace", str(ws)]) == 0
    assert ran["cwd"] == ws.resolve() == ran["workspace"]
    assert Path.cwd() == tmp_path  # restored


def test_working_directory_is_restored_on_errors(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError):
        with confine.working_directory(tmp_path / "in"):
            assert Path.cwd() == tmp_path / "in"
            raise ConfigError("stop")
    assert Path.cwd() == tmp_path


# -- a clean archive of a workspace with its own model: built, archived, verified, rerun ----------

OWN_MODEL = """\
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
"""
OWN_CONFIG = """\
name = "own"
device = "cpu"

[dataset]
sources = ["toyworld:n=12,size=32"]
min_frequency = 1

[[dissect]]
name = "own"
model = "m.py:build"
layers = ["2"]
batch_size = 12
topk = 2
"""


def test_own_model_workspace_builds_archives_and_reruns_with_trust(tmp_path, monkeypatch,
                                                                   one_torch_thread):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.py").write_text(OWN_MODEL)
    (ws / "unitdissect.toml").write_text(OWN_CONFIG)
    monkeypatch.chdir(ws)
    assert main(["build", "--confine", "--trust"]) == 0
    assert main(["archive", "--out", str(tmp_path / "own.tar.gz")]) == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path / "scratch")  # verify runs from a folder without m.py
    archive = tmp_path / "own.tar.gz"
    assert A.verify_archive(archive).ok
    refused(lambda: A.verify_archive(archive, rerun=True), "[[dissect]] model = 'm.py:build'")
    before = snapshot(tmp_path)
    report = A.verify_archive(archive, rerun=True, trust=True)
    assert report.ok, report.problems()
    assert report.rerun == [] and report.rerun_files == 2  # units.csv and iou.npy
    assert snapshot(tmp_path) == before and list(scratch.iterdir()) == []
    assert os.getcwd() == str(scratch)


def test_rerun_refuses_a_dataset_segmenter_folder_outside(tmp_path, scratch):
    """``[dataset] segmenter = "hf:PATH"`` (it labels ``images:`` sources) is a folder too."""
    text = ('name = "h"\n[dataset]\nsources = ["images:photos"]\nsegmenter = "hf:../seg"\n'
            '[[dissect]]\nname = "c"\nmodel = "demo:classifier"\nlayers = ["features.conv5_3"]\n')
    archive = archive_of(tmp_path, text)
    refused(lambda: A.verify_archive(archive, rerun=True),
            "[dataset] segmenter = 'hf:../seg'", "leaves the workspace")
    assert list(scratch.iterdir()) == []

"""The command line: help everywhere, one-line errors, the default command."""

from __future__ import annotations

import pytest

from builder.cli import main, make_parser


def test_every_command_has_help(capsys):
    parser = make_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"build", "dataset", "layers", "dissect", "render", "serve"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: unitdissect" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(capsys):
    assert main(["dataset", "build", "nonsense-source"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unitdissect: error: unknown dataset source 'nonsense-source'")
    assert "Traceback" not in err


def test_missing_directory_error(capsys, tmp_path):
    assert main(["dataset", "info", str(tmp_path / "nope")]) == 2
    assert "not a concept dataset" in capsys.readouterr().err


def test_no_command_runs_build(monkeypatch):
    seen = {}
    import builder.cli.build as build_cli

    monkeypatch.setattr(build_cli, "run", lambda args: seen.setdefault("ws", args.workspace) and 0)
    assert main([]) == 0 and seen["ws"] == "."
    seen.clear()
    assert main(["--debug", "--workspace", "w"]) == 0 and seen["ws"] == "w"


def test_build_rejects_missing_workspace(capsys, tmp_path):
    assert main(["build", "--workspace", str(tmp_path / "missing")]) == 2
    assert "--workspace" in capsys.readouterr().err

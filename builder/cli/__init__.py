"""The ``unitdissect`` command line: parse, dispatch to one function per command, report errors.

Each subcommand lives in its own module with ``register(subparsers)`` (cheap: no heavy imports)
and ``run(args) -> int`` (imports what it needs). User mistakes raise ``UnitDissectError``
subclasses; only this module turns them into a one-line message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import Sequence

from .. import __version__
from ..errors import ConfigError, UnitDissectError, storage_cause, storage_error

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("build", "dataset", "layers", "dissect", "ablate", "gan", "render", "serve",
            "archive", "verify", "demo")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _available_commands() -> list:
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"{__name__}.{name}"))
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # a real missing dependency, not an unimplemented command
    return modules


def make_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="unitdissect",
        description="Find out what the units of a vision network do, and publish the answer "
                    "as a static website. With no command, builds the demo site.")
    parser.add_argument("--version", action="version", version=f"unitdissect {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _available_commands():
        module.register(sub)
    return parser


def layer_list(text: str) -> list[str]:
    """The layers of a ``--layers A,B`` option; at least one, none twice."""
    layers = [name.strip() for name in text.split(",") if name.strip()]
    if not layers:
        raise ConfigError("--layers must name at least one layer",
                          hint="list them with `unitdissect layers MODEL`")
    twice = sorted({name for name in layers if layers.count(name) > 1})
    if twice:  # each layer is one folder of the run: a repeat would be dissected twice
        raise ConfigError(f"--layers names {', '.join(map(repr, twice))} twice")
    return layers


def seed_arg(text: str) -> int:
    """The value of a ``--seed N`` option (``type=`` of every command's ``--seed``): the
    config's ``seed`` rule, so that what one accepts the other does."""
    from ..workspace.config import seed_problem

    try:
        value = int(text)
    except ValueError:
        value = None
    why = seed_problem(value)
    if why:  # argparse names the option and exits 2, as for any malformed value
        raise argparse.ArgumentTypeError(f"{why}, got {text!r}")
    return value


def reproducing_command(command: str, args: argparse.Namespace,
                        negated: dict[str, str] | None = None) -> list[str]:
    """The command line that reproduces ``args``, every option spelled out (for manifests);
    ``negated`` maps a boolean flag that is on by default to its ``--no-...`` spelling."""
    negated = negated or {}
    words = ["unitdissect", command]
    for name, value in vars(args).items():
        if name in ("run", "command", "debug", "force") or value is None:
            continue
        if name in negated:
            words += [] if value else [negated[name]]
        else:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return words


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file=None, line: str | None = None) -> None:  # noqa: ANN001
    """A library's warning (torch's, Pillow's) as one line, like the project's own."""
    text = (str(message).strip().splitlines() or [category.__name__])[0]
    print(f"unitdissect: warning: {text} ({category.__name__})", file=file or sys.stderr)


def _error(message: str, hint: str | None = None) -> None:
    red, reset = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
    print(f"{red}unitdissect: error:{reset} {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("UNITDISSECT_LOG", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s")
    parser = make_parser()
    lead = 0  # global options stay before the command
    while lead < len(argv) and argv[lead] in ("--debug",):
        lead += 1
    commands = parser._subparsers._group_actions[0].choices
    if (lead == len(argv) or argv[lead] not in commands) and \
            not any(a in ("-h", "--help", "--version") for a in argv[lead:lead + 1]):
        argv.insert(lead, "build")  # no command: the main job, `unitdissect build`
    args = parser.parse_args(argv)
    shown = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _one_line_warning
    try:
        return _run(args)
    finally:
        warnings.showwarning = shown


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; turn what it raises into one line and an exit code."""
    try:
        return int(args.run(args) or 0)
    except UnitDissectError as e:
        if args.debug:
            raise
        _error(str(e), getattr(e, "hint", None))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _error("interrupted; rerun the same command to resume")
        return 130
    except Exception as e:
        if args.debug:
            raise
        cause = storage_cause(e)
        if cause is not None:
            problem = storage_error(cause)  # a write outside builder.io: a full disk, say
            _error(str(problem), problem.hint)
            return EXIT_USER_ERROR
        # the last resort: an input no check caught yet, or a bug; never a wall of traceback
        first = (str(e).strip().splitlines() or [""])[0]
        _error(f"{type(e).__name__}: {first}" if first else type(e).__name__,
               "run with --debug for the traceback (and report it if the input was right)")
        return EXIT_INTERNAL_ERROR

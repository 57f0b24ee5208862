"""The `depthscope` command line: assembles the subcommands of depthscope.commands (one module each).

Adding a subcommand means writing its module (COMMAND: its options and what it runs) and listing it in
COMMAND_MODULES; no other subcommand changes.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from depthscope.commands import Command, UsageError

__all__ = ["COMMAND_MODULES", "Command", "UsageError", "build_parser", "commands", "main"]

# In the order `depthscope --help` lists them.
COMMAND_MODULES = ("train", "record", "serve", "export", "figures", "analyze", "demo", "reproduce", "sweep")


def commands() -> list[Command]:
    return [importlib.import_module(f"depthscope.commands.{name}").COMMAND for name in COMMAND_MODULES]


def build_parser(only: str | None | bool = True) -> argparse.ArgumentParser:
    """The whole parser. only: True adds every command's options; a command name adds that command's only;
    None adds none (what `depthscope --help` needs: the options may import torch to read the configs)."""
    from depthscope import __version__

    parser = argparse.ArgumentParser(
        prog="depthscope",
        description="See, measure and compare depth routing (Attention Residuals and peers) in transformers.",
    )
    parser.add_argument("--version", action="version", version=f"depthscope {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in commands():
        command.add_parser(subparsers, arguments=only is True or only == command.name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=argv[0] if argv and argv[0] in COMMAND_MODULES else None)
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 2
    try:
        return int(command.run(args) or 0)
    except UsageError as err:
        args._parser.error(str(err))  # exits with status 2
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        # The library's errors (CorpusError, CheckpointError, config checks) say what is wrong and where.
        print(f"depthscope {command.name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"depthscope {command.name}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

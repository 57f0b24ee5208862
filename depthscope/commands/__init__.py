"""The `depthscope` subcommands, one module each; depthscope.cli assembles them.

Each module defines COMMAND (a `Command`: name, one-line help, description, epilog, and two functions: one
adding the command's options to its subparser, one running it and returning the exit status). A command's
module imports nothing heavy at import time, so that `depthscope --help` answers at once; its options come from
the workflow's config dataclasses (depthscope.options) wherever a field maps to one.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

EXIT_CODES = ("exit status: 0 done; 1 it could not do its job (a run, chunk or checkpoint that cannot be read, named "
              "on stderr){partial}; 2 bad arguments; 130 interrupted.")
PARTIAL_HELP = "write what can be done and exit 0 even when part of the run cannot be read (the errors still go to stderr)"


def exit_codes(partial: str = "") -> str:
    """The epilog's exit-status sentence; `partial`: what --allow-partial writes, for commands that have it."""
    return EXIT_CODES.format(partial=f"; with --allow-partial, {partial} and 0" if partial else "")


class UsageError(Exception):
    """Bad combination of arguments: printed as `depthscope NAME: error: ...`, exit status 2."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # one line, shown in `depthscope --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""  # longer text for `depthscope NAME --help`
    epilog: str = ""

    def add_parser(self, subparsers, arguments: bool = True) -> argparse.ArgumentParser:
        """This command's subparser; arguments=False leaves its options out (enough for `depthscope --help`)."""
        sub = subparsers.add_parser(self.name, help=self.help, description=self.description or self.help,
                                    epilog=self.epilog or None)
        if arguments:
            self.add_arguments(sub)
        sub.set_defaults(_command=self, _parser=sub)
        return sub


__all__ = ["Command", "EXIT_CODES", "PARTIAL_HELP", "UsageError", "exit_codes"]

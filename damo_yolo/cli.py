"""What the project's console scripts share (click): the help settings, options that take every value up to the
next option, and the Python entry that returns an exit code."""
from __future__ import annotations

from typing import Optional, Sequence

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def spread_values(args: list[str], option: str) -> list[str]:
    """``OPTION A B`` → ``OPTION A OPTION B``: every value up to the next option belongs to ``option``, as with
    argparse's nargs="+" (a click option takes a fixed number of values, so it is given once per value)."""
    out: list[str] = []
    taking = False  # the tokens read are ``option`` and its values
    for index, arg in enumerate(args):
        if arg == "--":
            return out + args[index:]
        if taking and not arg.startswith("-") and out[-1] != option:
            out.append(option)
        out.append(arg)
        taking = arg == option or arg.startswith(option + "=") or (taking and not arg.startswith("-"))
    return out


def several_values(*options: str) -> type[click.Command]:
    """A click command class whose ``options`` take several values after one flag (``--size H W``,
    ``--cfg-options A=1 B=2``); the option itself is declared ``multiple=True``."""

    class Command(click.Command):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            for option in options:
                args = spread_values(args, option)
            return super().parse_args(ctx, args)

    return Command


def run(command: click.Command, argv: Optional[Sequence[str]], prog_name: str) -> int:
    """``command`` with ``argv`` (default: the command line); returns the exit code (2: a usage error)."""
    try:
        command.main(args=None if argv is None else list(argv), prog_name=prog_name)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """The callback of a ``--cfg-options KEY=VALUE ...`` option: every item has a key and a value."""
    bad = [v for v in values if "=" not in v or v.startswith("=")]
    if bad:
        raise click.BadParameter(f"{bad[0]!r}: expected KEY=VALUE, e.g. max_epochs=10")
    return values


def parse_cfg_options(items: Sequence[str]) -> dict:
    """KEY=VALUE items as mmengine's DictAction reads them (numbers, booleans, None, lists, tuples)."""
    from argparse import Namespace

    from mmengine.config import DictAction
    namespace = Namespace(options={})
    if items:
        DictAction(option_strings=[], dest="options")(None, namespace, list(items))
    return namespace.options

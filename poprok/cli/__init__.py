"""The command line, ``pop-rok COMMAND`` (or ``python pop_rok.py COMMAND``): one module a command, as TFDS's.

Each command module has ``register(commands)``, which adds its parser and sets ``run``; ``main`` only wires
them. Information goes to the log (shown on stderr), problems end the command with ``error: ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pop_rok
from poprok.cli import build, export, push, sample, show, validate
from poprok.errors import PopRokError

COMMANDS = (sample, validate, build, export, push, show)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pop-rok", description=pop_rok.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.run(args) or 0
    except (PopRokError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

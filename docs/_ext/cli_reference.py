"""The ``capsjax`` parser as the command line page shows it (sphinx-argparse reads its help texts as
reStructuredText): :func:`capsjax.cli.build_parser` with ``*`` escaped and `code` made literal."""

import argparse
import re

from capsjax.cli import build_parser


def _as_rst(text: str | None) -> str | None:
    if not text:
        return text
    return re.sub(r"`([^`]+)`", r"``\1``", text.replace("*", r"\*"))


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = _as_rst(choice.help)
            for subparser in action.choices.values():
                yield from _parsers(subparser)


def parser() -> argparse.ArgumentParser:
    """The real parser of ``capsjax``, its help texts written for reStructuredText."""
    root = build_parser()
    for each in _parsers(root):
        for action in each._actions:
            action.help = _as_rst(action.help)
    return root

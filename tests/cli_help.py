"""Check that a command line's ``--help`` explains every argument it accepts, for any argparse parser."""

from __future__ import annotations

import argparse


def _squeeze(text: str) -> str:
    """Drop all whitespace: argparse re-wraps help text (and may break lines after hyphens)."""
    return "".join(text.split())


def undocumented_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Return a problem per argument (subcommands included) that ``--help`` does not explain.

    Every option and positional needs a help text of at least two words that appears in the
    formatted help, next to each of its option strings; every subcommand needs a help text.
    """
    problems = []
    help_text = _squeeze(parser.format_help())
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if not choice.help or len(choice.help.split()) < 2:
                    problems.append(f"{prefix}{choice.dest}: the subcommand has no help")
            for name, sub in action.choices.items():
                problems += undocumented_arguments(sub, f"{prefix}{name} ")
            continue
        name = f"{prefix}{(action.option_strings or [action.dest])[0]}"
        if action.help is None or action.help == argparse.SUPPRESS or len(action.help.split()) < 2:
            problems.append(f"{name}: no help text")
            continue
        if _squeeze(formatter._expand_help(action)) not in help_text:
            problems.append(f"{name}: its help text is not in --help")
        problems += [
            f"{prefix}{option}: not in --help" for option in action.option_strings if option not in help_text
        ]
    return problems

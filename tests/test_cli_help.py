"""Every command's --help: each option explained, examples that the parser accepts, --version."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from importlib.metadata import version

import pytest

from analysis.cli import EXAMPLES, _leaves, build_parser
from analysis.cli.datasets import _KIND_HELP, _KINDS

LEAVES = {" ".join(path): p for path, p in _leaves(build_parser())}


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_every_option_has_help_and_the_command_an_example(command):
    parser = LEAVES[command]
    silent = [a.option_strings or [a.dest] for a in parser._actions
              if not isinstance(a, argparse._HelpAction) and not a.help]
    assert silent == [], f"pathexp {command}: options without help"
    assert re.match(r"examples?:\s.*\bpathexp ", parser.epilog or "", re.S), f"pathexp {command}: no example"


@pytest.mark.parametrize(("command", "example"), [(c, x) for c, xs in sorted(EXAMPLES.items()) for x in xs])
def test_examples_parse(command, example):
    """An example is a command line the parser accepts (the part after a pipe, without sudo)."""
    argv = shlex.split(example.split("|")[-1])
    argv = argv[argv.index("pathexp") + 1:]
    assert " ".join(argv[:len(command.split())]) == command
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_examples_name_only_existing_commands():
    assert set(EXAMPLES) <= set(LEAVES)


def test_datasets_import_help_names_every_kind():
    assert tuple(_KIND_HELP) == _KINDS
    text = LEAVES["datasets import"].format_help()
    assert all(f"  {k} " in text for k in _KINDS)


def test_version_is_the_installed_one():
    out = subprocess.run([sys.executable, "-m", "analysis.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"pathexp {version('pathexp')}"

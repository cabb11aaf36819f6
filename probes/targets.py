"""Targets files: the destinations of local traceroutes, one per line.

A targets file lists addresses or host names, one per line; ``#`` starts a comment (to
the end of the line) and blank lines are skipped::

    # US anycast resolvers
    8.8.8.8
    one.one.one.one   # resolved once, when the trace starts

:func:`parse_targets` reads such text, :func:`read_targets` a file. The names are kept as
written; :func:`probes.local.trace_campaign` resolves and vets them.
"""

from __future__ import annotations

from pathlib import Path

from probes.errors import ConfigError

__all__ = ["parse_targets", "read_targets", "MAX_TARGETS_BYTES"]

#: Largest targets file read (about a million addresses); a larger one is refused.
MAX_TARGETS_BYTES = 16 << 20


def parse_targets(text: str) -> list[str]:
    """The targets of a targets file's text, in order, comments and blank lines dropped.

    Examples
    --------
    >>> parse_targets("# resolvers\\n8.8.8.8\\n\\n  one.one.one.one  # by name\\n2001:db8::1\\n")
    ['8.8.8.8', 'one.one.one.one', '2001:db8::1']
    """
    targets = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            targets.append(line)
    return targets


def read_targets(path: str | Path) -> list[str]:
    """The targets listed in a targets file (UTF-8), see :func:`parse_targets`.

    Raises
    ------
    probes.errors.ConfigError
        The file cannot be read, is larger than :data:`MAX_TARGETS_BYTES`, or is not UTF-8
        text.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TARGETS_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read targets file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_TARGETS_BYTES:
        raise ConfigError(f"targets file {path} is larger than {MAX_TARGETS_BYTES >> 20} MiB; split it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read targets file {path}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    return parse_targets(text)

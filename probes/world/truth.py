"""Read the ground truth a generated world wrote under ``<world_dir>/truth/``.

:class:`Truth` opens a world folder: the summary (``truth/world.json``: exposure per
family, the diversion, flagged PoPs, counts) is read at once; each table
(``truth/<name>.parquet``, keyed by ``(msm_id, prb_id, timestamp)``, timestamps in Unix
seconds) is read when asked for, optionally only some columns. The file names and schemas
are those :mod:`probes.world.writers` defines for the generator. Every failure is a
:class:`probes.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from probes.errors import ConfigError
from probes.world.writers import TRUTH_SCHEMAS, TRUTH_SUMMARY_FILE, TRUTH_TABLES, truth_table_file

__all__ = ["Truth", "read_truth"]


class Truth:
    """The ground truth of a folder written by :func:`probes.world.generate_world`.

    Parameters
    ----------
    world_dir : path
        The world folder (the one holding ``world.json`` and ``truth/``).

    Attributes
    ----------
    world_dir : pathlib.Path
    world : dict
        The parsed ``truth/world.json``.
    names : tuple of str
        The tables the world writes: ``traces``, ``hops``, ``ixp_crossings``,
        ``flagged_crossings``.

    Raises
    ------
    probes.errors.ConfigError
        ``truth/world.json`` is missing or unreadable.
    """

    names: tuple[str, ...] = TRUTH_TABLES

    def __init__(self, world_dir: str | Path) -> None:
        self.world_dir = Path(world_dir)
        summary = self.world_dir / TRUTH_SUMMARY_FILE
        try:
            self.world: dict = orjson.loads(summary.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{summary}: no ground truth (not a folder written by `pathexp world generate`)"
            ) from exc
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{summary}: unreadable ground truth: {exc}") from exc

    def __repr__(self) -> str:
        return f"Truth({str(self.world_dir)!r})"

    def table(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Read the truth table ``name`` (``truth/<name>.parquet``).

        Parameters
        ----------
        name : str
            One of :attr:`names`.
        columns : sequence of str, optional
            Read only these columns (default: all).

        Returns
        -------
        pyarrow.Table

        Raises
        ------
        probes.errors.ConfigError
            An unknown table or column, or a table file the folder lacks.
        """
        if name not in TRUTH_SCHEMAS:
            raise ConfigError(f"no truth table {name!r}; the world writes {', '.join(self.names)}")
        if columns is not None:
            columns = list(columns)
            known = TRUTH_SCHEMAS[name].names
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise ConfigError(
                    f"truth table {name!r} has no column {', '.join(map(repr, unknown))}; "
                    f"it has {', '.join(known)}"
                )
        path = self.world_dir / truth_table_file(name)
        try:
            return pq.read_table(path, columns=columns)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: missing; the ground truth is incomplete (regenerate the world)") from exc


def read_truth(world_dir: str | Path) -> Truth:
    """Open the ground truth of the world folder ``world_dir`` (see :class:`Truth`).

    Raises
    ------
    probes.errors.ConfigError
        ``<world_dir>/truth/world.json`` is missing or unreadable.
    """
    return Truth(world_dir)

"""Campaign state in SQLite (WAL): units, measurements, cursors, the credit ledger.

Every state change is one ``BEGIN IMMEDIATE`` transaction, so a process killed at any
instant leaves the database either before or after the change. One process at a time
works on a campaign (an ``flock`` on ``state.lock``; the kernel drops it when the process
dies, even by SIGKILL).

Unit states: ``planned`` -> ``intent`` (credits reserved, create about to be sent) ->
``created`` (measurement id recorded) | ``failed`` (reservation released);
``imported`` for measurements pulled in with ``campaign import``.

The credit ledger reserves per create *attempt*: the first attempt of unit ``u00001`` is
ledger row ``u00001``, a later one ``u00001#2``... An attempt is released only when the
server refused it (it was certainly not created); an attempt whose outcome stayed unknown
keeps its reservation for good, so the reservations always cover whatever the server may
have created. What the server charged (read from the measurement objects) is kept in
``charges``; a charge above a unit's reservations tops the reservation up (row
``u00001+charge``), so ``committed() >= charged()`` always.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from probes.errors import BudgetExceeded, StoreError
from probes.workspace import Campaign

__all__ = ["CampaignState", "UnitRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units(
    unit TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    target TEXT NOT NULL,
    probe_ids TEXT NOT NULL,
    definition TEXT NOT NULL,
    tag TEXT NOT NULL UNIQUE,
    cost INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('planned','intent','created','failed','imported')),
    msm_id INTEGER UNIQUE,
    status_id INTEGER,
    status_name TEXT,
    credits_per_result INTEGER,
    error TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    unit TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('reserve','release')),
    credits INTEGER NOT NULL,
    at REAL NOT NULL,
    UNIQUE (unit, kind)
);
CREATE TABLE IF NOT EXISTS cursors(
    msm_id INTEGER PRIMARY KEY,
    next_start INTEGER,
    done INTEGER NOT NULL DEFAULT 0,
    results INTEGER NOT NULL DEFAULT 0,
    windows INTEGER NOT NULL DEFAULT 0,
    final INTEGER NOT NULL DEFAULT 0,
    updated REAL
);
CREATE TABLE IF NOT EXISTS charges(
    msm_id INTEGER PRIMARY KEY,
    unit TEXT NOT NULL,
    credits INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probes(prb_id INTEGER PRIMARY KEY, obj TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class UnitRow:
    unit: str
    seq: int
    target: str
    probe_ids: tuple[int, ...]
    definition: dict[str, Any]
    tag: str
    cost: int
    state: str
    msm_id: int | None
    status_id: int | None
    status_name: str | None
    credits_per_result: int | None
    error: str | None


class CampaignState:
    """The state database of one campaign, opened with the campaign lock held."""

    def __init__(self, campaign: Campaign, conn: sqlite3.Connection, lock: IO[bytes]) -> None:
        self.campaign = campaign
        self._conn = conn
        self._lock = lock

    def __repr__(self) -> str:
        return f"CampaignState({self.campaign.name!r})"

    @classmethod
    @contextmanager
    def open(cls, campaign: Campaign, *, create: bool = True) -> Iterator[CampaignState]:
        root = campaign.root
        if not create and not campaign.state_db.exists():
            raise StoreError(f"campaign {campaign.name!r} has no state at {campaign.state_db}; "
                             "run `pathexp campaign submit` (or import) first")
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / "state.lock", "ab")
        try:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(f"another pathexp process is working on campaign "
                                 f"{campaign.name!r} ({root / 'state.lock'})") from exc
            try:
                conn = sqlite3.connect(campaign.state_db, isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"campaign state {campaign.state_db} is unreadable: {exc}") \
                    from exc
            try:
                yield cls(campaign, conn, lock)
            finally:
                conn.close()
        finally:
            lock.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def token(self) -> str:
        """The campaign token (random, made once): measurements are tagged with it."""
        tok = self.get("token")
        if tok is None:
            with self._tx() as c:
                row = c.execute("SELECT value FROM meta WHERE key='token'").fetchone()
                if row is None:
                    tok = os.urandom(5).hex()
                    c.execute("INSERT INTO meta VALUES ('token', ?)", (tok,))
                else:
                    tok = row[0]
        return tok

    def event(self, kind: str, detail: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO events(at, kind, detail) VALUES (?,?,?)",
                      (time.time(), kind, json.dumps(detail, sort_keys=True)))

    def events(self, kind: str | None = None) -> list[tuple[str, dict]]:
        q = "SELECT kind, detail FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        return [(k, json.loads(d)) for k, d in self._conn.execute(q, (kind,) if kind else ())]

    # -- plan freeze ----------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return self.get("plan_digest") is not None

    def freeze(self, *, digest: str, budget: int, units: Sequence[dict[str, Any]],
               probes: Iterable[dict], summary: dict[str, Any]) -> None:
        """Store the plan (units, probe objects) in one transaction."""
        now = time.time()
        with self._tx() as c:
            if c.execute("SELECT 1 FROM meta WHERE key='plan_digest'").fetchone():
                raise StoreError("plan already frozen")
            for u in units:
                c.execute(
                    "INSERT INTO units(unit, seq, target, probe_ids, definition, tag, cost, "
                    "state, updated) VALUES (?,?,?,?,?,?,?,'planned',?)",
                    (u["unit"], u["seq"], u["target"], json.dumps(list(u["probe_ids"])),
                     json.dumps(u["definition"], sort_keys=True), u["tag"], u["cost"], now))
            for p in probes:
                c.execute("INSERT OR REPLACE INTO probes VALUES (?,?)",
                          (int(p["id"]), json.dumps(p, sort_keys=True)))
            c.execute("INSERT INTO meta VALUES ('plan_digest', ?)", (digest,))
            c.execute("INSERT OR REPLACE INTO meta VALUES ('budget', ?)", (str(budget),))
            c.execute("INSERT OR REPLACE INTO meta VALUES ('plan', ?)",
                      (json.dumps(summary, sort_keys=True),))

    # -- units ----------------------------------------------------------------------
    def units(self, *, states: Iterable[str] | None = None) -> list[UnitRow]:
        q = ("SELECT unit, seq, target, probe_ids, definition, tag, cost, state, msm_id, "
             "status_id, status_name, credits_per_result, error FROM units")
        args: tuple = ()
        if states is not None:
            st = list(states)
            q += f" WHERE state IN ({','.join('?' * len(st))})"
            args = tuple(st)
        q += " ORDER BY seq"
        return [UnitRow(r[0], r[1], r[2], tuple(json.loads(r[3])), json.loads(r[4]), r[5], r[6],
                        r[7], r[8], r[9], r[10], r[11], r[12])
                for r in self._conn.execute(q, args)]

    def committed(self) -> int:
        """Credits reserved and not released."""
        row = self._conn.execute(
            "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits ELSE -credits END), 0) "
            "FROM ledger").fetchone()
        return int(row[0])

    def charged(self) -> int:
        """Credits the server charged for the campaign's measurements (as recorded)."""
        row = self._conn.execute("SELECT COALESCE(SUM(credits), 0) FROM charges").fetchone()
        return int(row[0])

    @staticmethod
    def _attempt_rows(c: sqlite3.Connection, unit: str) -> list[tuple[str, int, bool]]:
        """``(ledger name, credits, released)`` of each create attempt of ``unit``."""
        rows = c.execute(
            "SELECT r.unit, r.credits, EXISTS(SELECT 1 FROM ledger x WHERE x.unit=r.unit AND "
            "x.kind='release') FROM ledger r WHERE r.kind='reserve' AND "
            "(r.unit=? OR substr(r.unit, 1, ?)=?) ORDER BY r.id",
            (unit, len(unit) + 1, unit + "#")).fetchall()
        return [(str(a), int(b), bool(x)) for a, b, x in rows]

    def attempts(self, unit: str) -> int:
        """How many create attempts of ``unit`` hold (or held) a reservation."""
        return len(self._attempt_rows(self._conn, unit))

    def reserve(self, units: Sequence[UnitRow], *, budget: int, again: bool = False) -> None:
        """Reserve credits for a create attempt of ``units`` and mark them ``intent``.

        A unit whose current attempt already holds an unreleased reservation is not
        reserved twice, unless ``again``: a new attempt after an earlier one whose outcome
        stayed unknown (that one keeps its reservation). Never above ``budget``: raises
        :class:`BudgetExceeded` and changes nothing."""
        now = time.time()
        with self._tx() as c:
            committed = self._committed(c)
            new: list[tuple[str, int]] = []
            for u in units:
                rows = self._attempt_rows(c, u.unit)
                live = [r for r in rows if not r[2]]
                if live and not again:
                    continue
                n = len(rows) + 1
                new.append((u.unit if n == 1 else f"{u.unit}#{n}", u.cost))
            extra = sum(cost for _, cost in new)
            if committed + extra > budget:
                raise BudgetExceeded(
                    f"reserving {extra} more credits would commit {committed + extra} > "
                    f"budget {budget}")
            for name, cost in new:
                c.execute("INSERT INTO ledger(unit, kind, credits, at) VALUES (?, 'reserve', ?, ?)",
                          (name, cost, now))
            for u in units:
                c.execute("UPDATE units SET state='intent', updated=? WHERE unit=? AND "
                          "state IN ('planned','intent')", (now, u.unit))

    @staticmethod
    def _committed(c: sqlite3.Connection) -> int:
        return int(c.execute(
            "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits ELSE -credits END),"
            " 0) FROM ledger").fetchone()[0])

    def release_attempt(self, units: Sequence[str], *, state: str, error: str | None) -> None:
        """The server refused the latest create attempt of ``units`` (nothing was created):
        release that attempt's reservation and set the units to ``state`` (one transaction).
        """
        if state not in ("planned", "failed"):
            raise ValueError(state)
        now = time.time()
        with self._tx() as c:
            for unit in units:
                live = [r for r in self._attempt_rows(c, unit) if not r[2]]
                if live:
                    name, credits, _ = live[-1]
                    c.execute("INSERT OR IGNORE INTO ledger(unit, kind, credits, at) "
                              "VALUES (?, 'release', ?, ?)", (name, credits, now))
                c.execute("UPDATE units SET state=?, error=?, updated=? WHERE unit=? AND "
                          "state='intent'", (state, None if error is None else error[:500],
                                             now, unit))

    def note_unresolved(self, units: Sequence[str], error: str) -> None:
        """Keep ``units`` in ``intent`` (reservations held) with the reason, one transaction."""
        now = time.time()
        with self._tx() as c:
            for unit in units:
                c.execute("UPDATE units SET error=?, updated=? WHERE unit=?",
                          (error[:500], now, unit))

    def record_charge(self, unit: str, msm_id: int, credits: int) -> None:
        """What the server charges for measurement ``msm_id`` of ``unit`` (latest figure);
        tops the unit's reservation up when the charges pass it (one transaction)."""
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO charges(msm_id, unit, credits, at) "
                      "VALUES (?,?,?,?)", (int(msm_id), unit, int(credits), now))
            total = c.execute("SELECT COALESCE(SUM(credits), 0) FROM charges WHERE unit=?",
                              (unit,)).fetchone()[0]
            held = sum(cr for _, cr, rel in self._attempt_rows(c, unit) if not rel)
            top = c.execute("SELECT credits FROM ledger WHERE unit=? AND kind='reserve'",
                            (unit + "+charge",)).fetchone()
            held += 0 if top is None else int(top[0])
            if total > held:
                extra = total - held + (0 if top is None else int(top[0]))
                c.execute("INSERT OR REPLACE INTO ledger(unit, kind, credits, at) "
                          "VALUES (?, 'reserve', ?, ?)", (unit + "+charge", extra, now))

    def record_created(self, pairs: Sequence[tuple[str, int]]) -> None:
        """Record measurement ids for units (one transaction)."""
        now = time.time()
        with self._tx() as c:
            for unit, msm_id in pairs:
                c.execute("UPDATE units SET state='created', msm_id=?, error=NULL, updated=? "
                          "WHERE unit=?", (int(msm_id), now, unit))
                c.execute("INSERT OR IGNORE INTO cursors(msm_id) VALUES (?)", (int(msm_id),))

    def record_failed(self, units: Sequence[str], error: str) -> None:
        """Mark units failed and release their latest attempt's reservation."""
        self.release_attempt(units, state="failed", error=error)

    def record_imported(self, msm: dict[str, Any], *, since: int | None = None) -> bool:
        """Add an existing measurement (``campaign import``); False if already present.

        ``since``: where its fetch cursor starts (default: the measurement's start)."""
        now = time.time()
        mid = int(msm["id"])
        with self._tx() as c:
            if c.execute("SELECT 1 FROM units WHERE msm_id=?", (mid,)).fetchone():
                return False
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM units").fetchone()[0]
            st = msm.get("status") or {}
            c.execute(
                "INSERT INTO units(unit, seq, target, probe_ids, definition, tag, cost, state, "
                "msm_id, status_id, status_name, updated) VALUES (?,?,?,?,?,?,0,'imported',?,?,?,?)",
                (f"import-{mid}", seq, str(msm.get("target") or msm.get("target_ip") or ""),
                 "[]", json.dumps({"type": msm.get("type")}), f"import-{mid}", mid,
                 st.get("id"), st.get("name"), now))
            c.execute("INSERT OR IGNORE INTO cursors(msm_id, next_start) VALUES (?, ?)",
                      (mid, since))
        return True

    def record_status(self, msm_id: int, *, status_id: int | None, status_name: str | None,
                      credits_per_result: int | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE units SET status_id=?, status_name=?, "
                      "credits_per_result=COALESCE(?, credits_per_result), updated=? "
                      "WHERE msm_id=?",
                      (status_id, status_name, credits_per_result, time.time(), int(msm_id)))

    # -- cursors --------------------------------------------------------------------
    def cursor(self, msm_id: int) -> tuple[int | None, bool, int]:
        """``(next_start, done, records)`` of a measurement's fetch cursor."""
        c, done, n, _ = self.cursor_full(msm_id)
        return c, done, n

    def cursor_full(self, msm_id: int) -> tuple[int | None, bool, int, bool]:
        """Also whether the cursor was set while the measurement had already finished."""
        row = self._conn.execute(
            "SELECT next_start, done, results, final FROM cursors WHERE msm_id=?",
            (int(msm_id),)).fetchone()
        if row is None:
            return None, False, 0, False
        return row[0], bool(row[1]), int(row[2]), bool(row[3])

    def advance(self, msm_id: int, *, next_start: int, results: int, done: bool,
                final: bool = False) -> None:
        """Move a cursor after its window was ingested (one transaction)."""
        self.advance_many([(msm_id, next_start, results, done, final)])

    def advance_many(self, moves: Sequence[tuple[int, int, int, bool, bool]]) -> None:
        """Move cursors ``(msm_id, next_start, results, done, final)`` after the windows
        they cover were ingested, in one transaction."""
        now = time.time()
        with self._tx() as c:
            for msm_id, next_start, results, done, final in moves:
                c.execute("UPDATE cursors SET next_start=MAX(COALESCE(next_start, 0), ?), "
                          "results=results+?, windows=windows+1, done=?, final=?, updated=? "
                          "WHERE msm_id=?",
                          (int(next_start), int(results), int(done), int(final), now,
                           int(msm_id)))

    # -- probes ---------------------------------------------------------------------
    def probe_objects(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._conn.execute("SELECT obj FROM probes ORDER BY prb_id")]

    def known_probes(self) -> set[int]:
        return {r[0] for r in self._conn.execute("SELECT prb_id FROM probes")}

    def add_probes(self, probes: Iterable[dict]) -> None:
        with self._tx() as c:
            for p in probes:
                c.execute("INSERT OR REPLACE INTO probes VALUES (?,?)",
                          (int(p["id"]), json.dumps(p, sort_keys=True)))

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

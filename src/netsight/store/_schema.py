"""The SQLite schema of one run file, its version and the migrations between versions.

A new file is created by running the version-1 DDL and then every migration in order, so the migration
path is exercised by every run ever created. ``MIGRATIONS[v]`` upgrades a file from version ``v`` to
``v + 1`` inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "connect", "create", "migrate", "read_version"]

SCHEMA_VERSION = 2

# Version 1: runs, scalars, per-layer statistics with their coarse levels, histograms, images, tensors,
# alerts, the module tree and texts. Blob-carrying tables keep a rowid (SQLite stores large rows poorly
# in WITHOUT ROWID trees); small-row tables are WITHOUT ROWID and clustered on their lookup key.
_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, status TEXT NOT NULL,
    config TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, last_step INTEGER);
CREATE TABLE scalar_keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE scalars (
    key_id INTEGER NOT NULL, step INTEGER NOT NULL, value REAL,
    PRIMARY KEY (key_id, step)) WITHOUT ROWID;
CREATE TABLE scalar_levels (
    key_id INTEGER NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL,
    first_step INTEGER NOT NULL, last_step INTEGER NOT NULL, n INTEGER NOT NULL,
    mn REAL, mn_step INTEGER, mx REAL, mx_step INTEGER, sm REAL NOT NULL, cnt INTEGER NOT NULL, last REAL,
    PRIMARY KEY (key_id, level, bucket)) WITHOUT ROWID;
CREATE TABLE layers (idx INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE layer_stats (
    metric_id INTEGER NOT NULL, step INTEGER NOT NULL, data BLOB NOT NULL);
CREATE UNIQUE INDEX layer_stats_key ON layer_stats (metric_id, step);
CREATE TABLE layer_levels (
    metric_id INTEGER NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL,
    first_step INTEGER NOT NULL, last_step INTEGER NOT NULL, n INTEGER NOT NULL,
    mn BLOB NOT NULL, mx BLOB NOT NULL, sm BLOB NOT NULL, cnt BLOB NOT NULL, last BLOB NOT NULL);
CREATE UNIQUE INDEX layer_levels_key ON layer_levels (metric_id, level, bucket);
CREATE TABLE hist_edges (id INTEGER PRIMARY KEY, data BLOB NOT NULL UNIQUE);
CREATE TABLE histograms (
    kind TEXT NOT NULL, layer TEXT NOT NULL, step INTEGER NOT NULL, edges_id INTEGER NOT NULL,
    counts BLOB NOT NULL);
CREATE UNIQUE INDEX histograms_key ON histograms (kind, layer, step);
CREATE TABLE hist_layers (kind TEXT NOT NULL, layer TEXT NOT NULL, PRIMARY KEY (kind, layer));
CREATE TABLE images (
    id INTEGER PRIMARY KEY, step INTEGER NOT NULL, key TEXT NOT NULL, layer TEXT, kind TEXT NOT NULL,
    meta TEXT NOT NULL, png BLOB NOT NULL);
CREATE INDEX images_kind ON images (kind, key, step);
CREATE TABLE tensors (
    key TEXT NOT NULL, step INTEGER NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL);
CREATE UNIQUE INDEX tensors_key ON tensors (key, step);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, step INTEGER NOT NULL, layer TEXT, rule TEXT NOT NULL, value REAL,
    message TEXT NOT NULL, severity TEXT NOT NULL);
CREATE TABLE module_tree (id INTEGER PRIMARY KEY CHECK (id = 1), nodes TEXT NOT NULL);
CREATE TABLE texts (key TEXT PRIMARY KEY, step INTEGER, text TEXT NOT NULL);
"""

# Version 2 adds the change log that ``RunReader.changes_since`` reads: one row per writer commit
# saying what that commit touched, so a live view asks "what is new" without scanning tables.
_V1_TO_V2 = """
CREATE TABLE changes (seq INTEGER PRIMARY KEY, time REAL NOT NULL, last_step INTEGER,
                      summary TEXT NOT NULL);
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return run


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _script(_V1_TO_V2)}


def connect(path: str, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, synchronous=NORMAL."""
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        # 16 KiB pages keep a coarse-level row (5 blobs of 4 bytes per layer) in one page up to ~780
        # layers, so reading one of its blobs never walks an overflow chain. Only takes effect on a new
        # file (before its first table); existing files keep theirs.
        conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache: level blobs stay hot
    except sqlite3.Error as exc:
        raise StoreError(
            f"path: cannot open the run file {path!r} ({exc}). Check that it is a netsight run "
            "file and that the directory is readable and writable."
        ) from exc
    return conn


def read_version(conn: sqlite3.Connection) -> int | None:
    """The schema version of an open run file, or ``None`` while it is still being created."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else int(row[0])


def create(conn: sqlite3.Connection) -> None:
    """Lay out a new, empty run file at the current version (inside the caller's transaction)."""
    _script(_V1)(conn)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    migrate(conn, 1, path="(new file)")


def migrate(conn: sqlite3.Connection, version: int, *, path: str) -> None:
    """Upgrade a file from ``version`` to :data:`SCHEMA_VERSION` (inside the caller's transaction)."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"path: the run file {path!r} has schema version {version}, newer than this netsight's "
            f"{SCHEMA_VERSION}. Upgrade netsight to read it."
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreError(
                f"path: the run file {path!r} has schema version {version}, which this netsight cannot "
                f"migrate (it migrates from versions {sorted(MIGRATIONS)}). Re-create the run."
            )
        step(conn)
        version += 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

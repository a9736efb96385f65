"""Where runs live: one directory per store, one SQLite file per run, a marker file naming the layout."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from ..errors import ArgumentError, StoreError

__all__ = ["MARKER", "RUN_SUFFIX", "check_store", "ensure_store", "reserve", "run_names", "run_path"]

MARKER = "netsight-store.json"
RUN_SUFFIX = ".sqlite"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


def validate_name(name: object, argument: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(RUN_SUFFIX):
        raise ArgumentError(
            f"{argument}: a run name is letters, digits, '.', '_' and '-' (1 to 200 of them, starting with "
            f"a letter or digit, not ending in {RUN_SUFFIX!r}); got {name!r}. Pass e.g. 'mnist-cnn'."
        )
    return name


def in_store(name: str) -> bool:
    """Whether ``name`` can only name a file directly inside the store directory (no separator, no
    ``..``, no NUL, not over-long): what a reader may open, whatever the name's other characters."""
    return (
        0 < len(name) <= 200
        and name not in (".", "..")
        and not any(c in name for c in ("/", "\\", "\0", os.sep))
    )


def run_path(store_dir: Path, name: str) -> Path:
    return store_dir / f"{name}{RUN_SUFFIX}"


def ensure_store(store_dir: str | os.PathLike[str]) -> Path:
    """Create the store directory (and its marker) if missing; refuse a path that is a file."""
    path = Path(store_dir)
    if path.exists() and not path.is_dir():
        raise StoreError(f"store_dir: {str(path)!r} is a file, not a directory. Pass a directory path.")
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        tmp = path / f".{MARKER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"format": "netsight-runs", "layout": "one SQLite file per run"}) + "\n")
        os.replace(tmp, marker)
    return path


def check_store(store_dir: str | os.PathLike[str]) -> Path:
    """The store directory for reading; a clear StoreError when it is missing or not a store."""
    path = Path(store_dir)
    if not path.exists():
        raise StoreError(
            f"store_dir: {str(path)!r} does not exist. Pass the directory given to ns.open_run(...) "
            "(it is created by the first run written there)."
        )
    if not path.is_dir():
        raise StoreError(f"store_dir: {str(path)!r} is a file, not a store directory. Pass its directory.")
    if not (path / MARKER).exists() and not any(path.glob(f"*{RUN_SUFFIX}")) and any(path.iterdir()):
        raise StoreError(
            f"store_dir: {str(path)!r} is not a netsight store (no {MARKER} and no *{RUN_SUFFIX} run "
            "files). Pass the directory given to ns.open_run(...)."
        )
    return path


def run_names(store_dir: Path) -> list[str]:
    return sorted(p.name[: -len(RUN_SUFFIX)] for p in store_dir.glob(f"*{RUN_SUFFIX}") if p.is_file())


def reserve(store_dir: Path, name: str | None) -> tuple[str, Path]:
    """Claim a fresh run file atomically (O_EXCL): ``name``, else ``name-2``, ``name-3``, ..."""
    base = validate_name(name) if name is not None else time.strftime("run-%Y%m%d-%H%M%S")
    for i in range(1, 100_000):
        candidate = base if i == 1 else f"{base}-{i}"
        path = run_path(store_dir, candidate)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate, path
    raise StoreError(
        f"name: no free run name derived from {base!r} in {str(store_dir)!r}. Pick another name."
    )


def lock_path(path: Path) -> Path:
    """The lock file its writer holds (``flock``) while a run is open for writing."""
    return path.with_name(path.name + "-lock")


class WriterLock:
    """An exclusive ``flock`` on the run's lock file, held by the writing process until ``release``.

    The kernel drops it when the process dies (even by SIGKILL), so readers can tell a run that is being
    written from one whose writer died (:func:`is_writing`). Where ``fcntl`` is missing (Windows) the
    lock does nothing and :func:`is_writing` answers ``None``.
    """

    def __init__(self, path: Path, *, wait: float = 2.0) -> None:
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        fd = os.open(lock_path(path), os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() < deadline:  # a reader's brief shared lock, or another writer
                    time.sleep(0.02)
                    continue
                os.close(fd)
                raise StoreError(
                    f"name: run {path.name[: -len(RUN_SUFFIX)]!r} is open for writing by another Run or "
                    "process. Close that one first, or write to a new run (resume=False)."
                ) from None
            break
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_writing(path: Path) -> bool | None:
    """Whether a live writer holds the run open (``None`` where this cannot be told)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)

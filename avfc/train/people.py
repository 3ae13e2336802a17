"""Who is in which training file, and a development split that keeps every person on one side.

The table ``people.csv`` (beside this module; metadata, not media) maps a file, relative to the
data root (``../shared/data``), to a person id; a picture of several people lists them joined
with ``+``. It was written from ``SOURCES-2026-12.md`` (its "person" column and the repeats it
notes) and from a look at the clips of ``av/``, ``face/`` and ``av-eval/``. Files of ``av-eval/``
are listed too: their people must never be trained on, and :func:`eval_overlap` finds any
training file that shows one of them.

The split works on *groups*: people linked by a shared file (a group photo) are one group, so
neither a person nor a picture of several people straddles the split. A group goes to the
development side when a hash of its smallest person id, with the split seed, falls under
``dev_fraction`` (stable when files are added: a group's side never depends on the others).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from avfc.errors import ConfigError

#: the table shipped with the package
TABLE = Path(__file__).with_name("people.csv")
#: folders whose people must never be trained on
EVAL_FOLDERS = ("av-eval", "speech-eval")


def load_people(path: str | os.PathLike[str] | None = None) -> dict[str, tuple[str, ...]]:
    """``{relative file: (person id, ...)}`` from the table (``#`` lines are comments)."""
    src = Path(path) if path is not None else TABLE
    try:
        lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as exc:
        raise ConfigError(f"cannot read the people table {str(src)!r}: {exc}") from exc
    rows = list(csv.DictReader(lines))
    out: dict[str, tuple[str, ...]] = {}
    for row in rows:
        f, p = (row.get("file") or "").strip(), (row.get("person") or "").strip()
        if not f or not p:
            raise ConfigError(f"people table {str(src)!r}: a row without a file or a person: {row}")
        if f in out:
            raise ConfigError(f"people table {str(src)!r}: {f!r} is listed twice")
        out[f] = tuple(sorted({x.strip() for x in p.split("+") if x.strip()}))
    return out


def persons(rel: str, table: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The people of ``rel`` (a path relative to the data root, ``/`` separated); a file the
    table does not list is its own person (``?<path>``), so it still lands on one side."""
    return table.get(rel, (f"?{rel}",))


def eval_people(table: Mapping[str, tuple[str, ...]]) -> set[str]:
    """Every person of the evaluation-only folders."""
    return {p for f, ps in table.items() if f.split("/", 1)[0] in EVAL_FOLDERS for p in ps}


def eval_overlap(files: Iterable[str], table: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``{file: evaluation people it shows}`` for every training file that shows one (to drop)."""
    held = eval_people(table)
    out = {}
    for rel in files:
        if rel.split("/", 1)[0] in EVAL_FOLDERS:
            out[rel] = persons(rel, table)
            continue
        hit = tuple(p for p in persons(rel, table) if p in held)
        if hit:
            out[rel] = hit
    return out


def groups(files: Iterable[str], table: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """``{file: group id}``: people who share a file are one group (union-find); the id is the
    group's smallest person id."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    files = list(files)
    for rel in files:
        ps = persons(rel, table)
        for p in ps[1:]:
            a, b = find(ps[0]), find(p)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {rel: find(persons(rel, table)[0]) for rel in files}


def _side(group: str, dev_fraction: float, seed: int) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}|{group}".encode()).digest()[:8], "big") / 2.0**64
    return "dev" if h < dev_fraction else "train"


@dataclass(frozen=True)
class Split:
    """Files on each side, the people on each, and the files dropped for showing an evaluation person."""

    train: list[str]
    dev: list[str]
    dropped: dict[str, tuple[str, ...]]
    group_of: dict[str, str]

    def side(self, rel: str) -> str:
        """``"train"``, ``"dev"`` or ``"dropped"``."""
        if rel in self.dropped:
            return "dropped"
        return "dev" if rel in set(self.dev) else "train"

    def people(self, side: str, table: Mapping[str, tuple[str, ...]]) -> set[str]:
        """The people on ``side`` (``"train"`` or ``"dev"``)."""
        return {p for rel in getattr(self, side) for p in persons(rel, table)}


def split_files(files: Iterable[str], table: Mapping[str, tuple[str, ...]] | None = None, *,
                dev_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split ``files`` (relative to the data root) by group of people; drop those that show an
    evaluation person (or sit in an evaluation folder)."""
    if not 0.0 <= dev_fraction < 1.0:
        raise ConfigError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    table = load_people() if table is None else table
    files = sorted(set(files))
    dropped = eval_overlap(files, table)
    kept = [f for f in files if f not in dropped]
    group_of = groups(kept, table)
    train = [f for f in kept if _side(group_of[f], dev_fraction, seed) == "train"]
    dev = [f for f in kept if _side(group_of[f], dev_fraction, seed) == "dev"]
    return Split(train, dev, dropped, group_of)

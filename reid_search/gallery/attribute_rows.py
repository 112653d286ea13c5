"""The attribute probabilities of a gallery's entries, in SQLite beside their rows.

Table ``entry_attributes``: one row per entry, one integer column per attribute (probability in
thousandths, so a description becomes an SQL expression SQLite evaluates inside a filtered
search); table ``attribute_head``: which head made them (its name, SHA-256, attribute names,
the model it reads). Entries added while the gallery has a head attached
(:meth:`AttributeRows.attach_attribute_head`, which ``index`` does when the model has one) get
their probabilities in the same transaction as their rows and vectors.

Usage::

    gallery.fill_attributes(head)            # every entry without attributes, from its stored vector
    expression = description_sql(parse_description("red top, backpack"))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .folder import GalleryError, now_iso

SCALE = 1000  # stored: round(probability * SCALE)


def head_info(head) -> dict[str, Any]:
    """What the gallery records of the head that made its attributes."""
    return {
        "names": list(head.names),
        "head": head.card.get("name", ""),
        "head_sha256": head.sha256,
        "model_sha256": head.model_sha256,
    }


def description_sql(description, table: str = "a") -> str:
    """An SQL expression of the probability that an entry fits ``description`` (a
    :class:`~reid_search.attributes.vocabulary.Description`): the product of its terms'
    probabilities; a term of several attributes is their union (independent), a negated one its
    complement."""
    return " * ".join(term_sql(term, table) for term in description.terms) or "1.0"


def term_sql(term, table: str = "a") -> str:
    """One term's probability (for showing what an answer matched)."""
    miss = " * ".join(f"(1.0 - {table}.{name} / {SCALE}.0)" for name in term.attributes)
    return f"({miss})" if term.negated else f"(1.0 - {miss})"


class AttributeRows:
    """Reads and writes of the gallery's entry attributes (a mixin of the Gallery)."""

    attribute_head = None  # a head attached for writing: entries added get its probabilities

    def attribute_info(self) -> dict[str, Any] | None:
        """The head that made this gallery's attributes, or None when it has none."""
        if not self._has_table("attribute_head"):
            return None
        rows = dict(self.con.execute("select key, value from attribute_head").fetchall())
        return {k: json.loads(v) for k, v in rows.items()} or None

    def require_attributes(self) -> dict[str, Any]:
        """:meth:`attribute_info`, or the one error that says which command adds them."""
        info = self.attribute_info()
        if info is None:
            raise GalleryError(
                f"gallery {self.name!r} has no attributes: run `reid-search attributes {self.name}` "
                "(reads its stored vectors; no image is embedded again)"
            )
        return info

    def attach_attribute_head(self, head) -> None:
        """Give entries added from now on ``head``'s probabilities (:meth:`fill_attributes` first)."""
        self.fill_attributes(head)
        self.attribute_head = head

    def fill_attributes(self, head, rebuild: bool = False) -> int:
        """Store ``head``'s probabilities for every entry that has none, reading only stored
        vectors, in one transaction; all entries again when ``rebuild`` or when another head made
        the stored ones. Returns how many entries were written."""
        info = head_info(head)
        current = self.attribute_info()
        reset = rebuild or current is None or current.get("head_sha256") != info["head_sha256"]
        missing = None if reset else set(self.ids_without_attributes().tolist())
        if missing is not None and not missing:
            return 0
        written = 0
        with self._transaction():
            if reset:
                self._create_attribute_tables(info, drop=True)
            for ids, vectors in self.iter_vectors():
                keep = np.ones(len(ids), bool) if missing is None else np.isin(ids, list(missing))
                if keep.any():
                    self._insert_attributes(ids[keep], head.probabilities(vectors[keep]), head.names)
                    written += int(keep.sum())
        return written

    def ids_without_attributes(self) -> np.ndarray:
        """Entries that have no stored attributes (all of them before any run)."""
        if not self._has_table("entry_attributes"):
            return self.ids()
        sql = "select faiss_id from vectors where faiss_id not in (select faiss_id from entry_attributes)"
        return np.array([r[0] for r in self.con.execute(sql)], np.int64)

    def attribute_rows(self, ids: Sequence[int]) -> dict[int, dict[str, float]]:
        """id -> {attribute: probability} of the given entries."""
        info = self.require_attributes()
        names = info["names"]
        wanted = [int(i) for i in ids]
        out: dict[int, dict[str, float]] = {}
        for start in range(0, len(wanted), 900):  # SQLite's variable limit
            chunk = wanted[start : start + 900]
            sql = f"select faiss_id, {', '.join(names)} from entry_attributes "
            sql += f"where faiss_id in ({','.join('?' * len(chunk))})"
            for r in self.con.execute(sql, chunk):
                out[r[0]] = {n: v / SCALE for n, v in zip(names, r[1:], strict=True)}
        return out

    def term_probabilities(self, ids: Sequence[int], description) -> dict[int, list[float]]:
        """id -> the probability of each of ``description``'s terms, for the given entries."""
        self.require_attributes()
        terms = ", ".join(term_sql(t) for t in description.terms)
        wanted = [int(i) for i in ids]
        out: dict[int, list[float]] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            sql = f"select a.faiss_id, {terms} from entry_attributes a where a.faiss_id in "
            sql += f"({','.join('?' * len(chunk))})"
            out.update({r[0]: list(r[1:]) for r in self.con.execute(sql, chunk)})
        return out

    # -- inside transactions ------------------------------------------------------------------
    def _add_attributes_of(self, rows: list[dict[str, Any]], vectors: np.ndarray) -> None:
        """Called by ``add_units`` inside its transaction: the attached head's probabilities."""
        if self.attribute_head is not None and rows:
            ids = [r["faiss_id"] for r in rows]
            self._insert_attributes(
                ids, self.attribute_head.probabilities(vectors), self.attribute_head.names
            )

    def _insert_attributes(self, ids: Sequence[int], probabilities: np.ndarray, names: Sequence[str]) -> None:
        stored = np.rint(np.clip(probabilities, 0, 1) * SCALE).astype(np.int64)
        sql = f"insert or replace into entry_attributes (faiss_id, {', '.join(names)}) values "
        sql += f"({', '.join('?' * (len(names) + 1))})"
        self.con.executemany(sql, [[int(i), *row] for i, row in zip(ids, stored.tolist(), strict=True)])

    def _forget_attributes(self, ids: Sequence[int]) -> None:
        if self._has_table("entry_attributes"):
            self.con.executemany("delete from entry_attributes where faiss_id = ?", [(int(i),) for i in ids])

    def _create_attribute_tables(self, info: dict[str, Any], drop: bool = False) -> None:
        for name in info["names"]:
            if not name.isidentifier():
                raise GalleryError(f"attribute name {name!r} is not a plain identifier")
        if drop:
            self.con.execute("drop table if exists entry_attributes")
            self.con.execute("drop table if exists attribute_head")
        columns = ", ".join(f"{name} integer" for name in info["names"])
        self.con.execute(
            f"create table if not exists entry_attributes (faiss_id integer primary key, {columns})"
        )
        self.con.execute("create table if not exists attribute_head (key text primary key, value text)")
        values = {**info, "created": now_iso()}
        self.con.executemany(
            "insert or replace into attribute_head (key, value) values (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def _has_table(self, name: str) -> bool:
        sql = "select 1 from sqlite_master where type = 'table' and name = ?"
        return self.con.execute(sql, (name,)).fetchone() is not None

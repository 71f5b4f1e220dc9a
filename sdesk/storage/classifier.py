"""The Store's classifiers (a part of `Store`, split out to keep files small).

A model per ticket field: its classes and settings in `classifier_models.info` (JSON), its terms
in `classifier_terms`, one row each, so that classifying a ticket reads only the rows of the
ticket's own terms (a primary-key lookup per term), never the whole vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BadInput
from .migrations import DONE_SQL
from .rows import Db

if TYPE_CHECKING:  # imported when first used: every command imports the Store, few classify
    from ..domain.classifier import Model

FIELDS = ("category", "queue")
_CHUNK = 500  # terms per query: well under SQLite's limit on bound parameters


def check_field(field: str) -> str:
    if field not in FIELDS:
        raise BadInput(f"--field: {field!r} is not a field the classifier learns; choose from {', '.join(FIELDS)}")
    return field




class ClassifierStore:
    def __init__(self, db: Db) -> None:
        self.db = db

        self._classifiers: dict[str, tuple[int, Model | None]] = {}  # field -> (model id, model), read once


    def save_classifier(self, field: str, *, model: Model, actor: str) -> None:
        """Replace the field's model, all in one transaction: a reader sees the old one or the
        new one. The audit trail records who trained it, on how much."""
        check_field(field)
        info = model.info()
        with self.db.write(actor) as tx:
            # Terms are deleted explicitly too: ON DELETE CASCADE needs foreign keys enforced.
            tx.conn.execute("DELETE FROM classifier_terms WHERE field = ?", (field,))
            tx.conn.execute("DELETE FROM classifier_models WHERE field = ?", (field,))
            tx.conn.execute("INSERT INTO classifier_models (field, trained_at, info) VALUES (?, ?, ?)",
                            (field, tx.at, orjson.dumps(info).decode()))
            tx.conn.executemany("INSERT INTO classifier_terms (field, term, weights) VALUES (?, ?, ?)",
                                ((field, term, blob) for term, blob in model.to_rows()))
            tx.event(None, "classifier_trained", {"field": field, "classes": info.get("classes"),
                                                  "docs": info["n_docs"], "terms": info["n_terms"]})
        self._classifier_cache().pop(field, None)

    def has_classifier(self) -> bool:
        return bool(self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM classifier_models)").fetchone()[0])

    def classifier_info(self, field: str) -> dict[str, Any] | None:
        """The stored model's info (classes, temperature, threshold, counts...) and trained_at."""
        row = self.db.conn.execute("SELECT trained_at, info FROM classifier_models WHERE field = ?",
                                (check_field(field),)).fetchone()
        return {**orjson.loads(row["info"]), "field": field, "trained_at": row["trained_at"]} if row else None

    def classify(self, field: str, *, text: str) -> tuple[str, float, float] | None:
        """(label, confidence in [0, 1], the model's routing threshold) from the field's model, or
        None when there is none."""
        # The info and the terms must come from the same model, even if one is saved meanwhile.
        with self.db.dialect.reading(self.db.conn):
            model = self._classifier_model(field)
            if model is None:
                return None
            return (*model.predict(text, lambda terms: self._classifier_terms(field, terms)), model.threshold)

    def training_tickets(self, field: str) -> list[tuple[str, str]]:
        """(title + newline + description, the field's value) of every resolved or closed ticket
        where the field is set: what people confirmed, rather than what intake guessed. A value
        the classifier itself applied counts only once a person corrected it, or the model
        would learn its own guesses."""
        column = check_field(field)
        guessed = {row[0] for row in self.db.conn.execute(
            f"SELECT ticket_id FROM events WHERE kind IN ('created', 'triaged') "
            f"AND CAST({self.db.dialect.json_get('data', '?')} AS TEXT) IN ('1', 'true')",  # true: 1 in SQLite's JSON
            (f"$.triage.classifier.{column}.applied",))}
        if guessed:
            guessed -= {row[0] for row in self.db.conn.execute(
                f"SELECT ticket_id FROM events WHERE kind = 'triage_corrected' AND {self.db.dialect.json_get('data', '?')} "
                "IS NOT NULL",
                (f"$.{column}",))}
        rows = self.db.conn.execute(
            f"SELECT id, title, description, {column} FROM tickets "
            f"WHERE {DONE_SQL} AND trim(coalesce({column}, '')) != '' ORDER BY id"
        ).fetchall()
        return [(f"{title}\n{description or ''}", value) for ticket_id, title, description, value in rows
                if ticket_id not in guessed]

    # -- helpers -------------------------------------------------------------------------

    def _classifier_cache(self) -> dict[str, tuple[int, Model | None]]:
        return self._classifiers

    def _classifier_model(self, field: str) -> Model | None:
        """The field's model info, parsed once per process. The data version changes when
        another connection commits, so a long-running process (serve, tui) sees a retrained model;
        our own saves clear the cache."""
        version = self.db.dialect.data_version(self.db.conn)
        cache = self._classifier_cache()
        cached = cache.get(field)
        if cached is not None and cached[0] == version:
            return cached[1]
        from ..domain.classifier import Model

        info = self.classifier_info(field)
        model = Model.from_info(info) if info else None
        cache[field] = (version, model)
        return model

    def _classifier_terms(self, field: str, terms: list[str]) -> dict[str, tuple[float, tuple[float, ...]]]:
        from ..domain.classifier import unpack

        found: dict[str, tuple[float, tuple[float, ...]]] = {}
        for start in range(0, len(terms), _CHUNK):
            chunk = terms[start:start + _CHUNK]
            sql = (f"SELECT term, weights FROM classifier_terms WHERE field = ? "
                   f"AND term IN ({', '.join('?' * len(chunk))})")
            for term, blob in self.db.conn.execute(sql, (field, *chunk)):
                found[term] = unpack(blob)
        return found

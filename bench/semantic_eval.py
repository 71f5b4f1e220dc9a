"""Semantic search, evaluated: the KB queries of bench/semantic/kb_queries.yaml (written as
requesters type them; `paraphrase` ones share no word with their article) against the example
articles, by words alone (FTS, as `kb search` ranked before issue 24) and hybrid (words and
meaning, fused); and, on the labelled corpus tickets, the share of each ticket's 5 nearest
neighbours (in a held-out split) that have its label, by shared words and by meaning.

    .venv/bin/python bench/semantic_eval.py [--tickets N] [--json PATH]

tests/test_semantic.py runs `kb_eval` and holds hybrid to its margin.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = ROOT / "bench" / "semantic" / "kb_queries.yaml"
CORPUS = ROOT.parent / "shared" / "corpus" / "tickets" / "it_service_ticket_classification_v3_kaggle_cc0.zip"


def with_examples(store: Any) -> Any:
    """The store, given the example articles and indexed."""
    from sdesk.domain.kb import check_article, parse_article
    from sdesk.services import semantic

    articles = [(p.stem, check_article(parse_article(p.read_text(encoding="utf-8"), str(p)), str(p)))
                for p in sorted((ROOT / "examples" / "kb").glob("*.md"))]
    store.kb.kb_sync(articles, actor="eval")
    semantic.index(store, actor="eval")
    return store


def _scores(ranks: list[int | None], kinds: list[str]) -> dict[str, Any]:
    def of(rs: list[int | None]) -> dict[str, float]:
        return {"n": len(rs), "hit_at_1": sum(r == 1 for r in rs) / len(rs),
                "mrr": sum(1 / r for r in rs if r) / len(rs)}

    return {"all": of(ranks), **{k: of([r for r, kk in zip(ranks, kinds) if kk == k]) for k in sorted(set(kinds))}}


def kb_eval(store: Any, queries: list[dict[str, str]]) -> dict[str, Any]:
    """hit@1 and MRR (a query whose article is not listed scores 0) by words and hybrid."""
    from sdesk.domain.kb import fts_query
    from sdesk.services import semantic

    slug = {a["id"]: s for s, a in ((store.kb.kb_get(i)["slug"], store.kb.kb_get(i))
                                     for i in [a["id"] for a in store.kb.kb_list()])}
    words, hybrid = [], []
    for q in queries:
        every = fts_query(q["query"])
        lexical = store.kb.kb_search(every, limit=10) or store.kb.kb_search(fts_query(q["query"], any_term=True), limit=10)
        both, mode = semantic.search_kb(store, q["query"], limit=10)
        assert mode == semantic.HYBRID
        for found, into in ((lexical, words), (both, hybrid)):
            listed = [slug[a["id"]] for a in found]
            into.append(listed.index(q["article"]) + 1 if q["article"] in listed else None)
    kinds = [q["kind"] for q in queries]
    return {"queries": len(queries), "words": _scores(words, kinds), "hybrid": _scores(hybrid, kinds)}


def load_queries(path: Path = QUERIES) -> list[dict[str, str]]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def neighbour_eval(n_tickets: int, seed: int = 1) -> dict[str, Any]:
    """On the corpus: for each held-out ticket, the share of its 5 nearest neighbours among the
    training tickets that have its label: by word overlap (cosine of TF-IDF vectors, what FTS-style
    similarity measures) and by the embedding."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from sdesk.domain import classifier
    from sdesk.domain.labelled import read_labelled
    from sdesk.embedding import embedder

    data = read_labelled(CORPUS, ["Document"], "Topic_group")
    texts, labels = data.texts[:n_tickets], data.labels[:n_tickets]
    train, test = classifier.split(labels, 0.2, seed)
    y_train = np.array([labels[i] for i in train])
    y_test = np.array([labels[i] for i in test])
    tfidf = TfidfVectorizer(sublinear_tf=True).fit([texts[i] for i in train])
    a, b = tfidf.transform([texts[i] for i in train]), tfidf.transform([texts[i] for i in test])
    model = embedder()
    ea, eb = model.embed([texts[i] for i in train]), model.embed([texts[i] for i in test])
    out = {}
    for name, sims in (("words", lambda s, e: (b[s:e] @ a.T).toarray()), ("meaning", lambda s, e: eb[s:e] @ ea.T)):
        shares = []
        for start in range(0, len(test), 1000):
            block = sims(start, min(start + 1000, len(test)))
            top = np.argpartition(-block, 5, axis=1)[:, :5]
            shares.append((y_train[top] == y_test[start:start + len(block), None]).mean(axis=1))
        out[name] = float(np.concatenate(shares).mean())
    return {"tickets": len(texts), "held_out": len(test), "label_share_of_5nn": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=47837, help="Corpus tickets for the neighbour check (0: skip).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from sdesk.store import Store

        with Store(Path(tmp) / "eval.db") as store:
            result = {"kb": kb_eval(with_examples(store), load_queries())}
    if args.tickets and CORPUS.exists():
        result["tickets"] = neighbour_eval(args.tickets)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

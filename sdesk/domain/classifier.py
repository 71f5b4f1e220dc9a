"""The ticket classifier: learns a field (category, queue) from labelled ticket text.

Training uses scikit-learn (TF-IDF of words and word pairs, a linear SVM) and is imported only
inside `train`. What it learns is exported as plain data: per class an intercept, and per term
its idf and one weight per class. Classifying a ticket (`Model.predict`) is pure Python over the
ticket's own terms, fetched through a `lookup` callable, so intake never imports numpy and never
loads the whole vocabulary.

Pure: no file or database I/O here (`labelled.py` reads CSV files, `storage/classifier.py` the store).
"""

from __future__ import annotations

import math
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import mul
from typing import Any

from ..errors import BadInput, SdeskError

FORMAT = 1  # bump when the tokenizer or the scoring changes: old models must then be retrained
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more characters
NGRAMS = (1, 2)
MIN_DOCS, MIN_CLASSES = 20, 2
# Chosen on the v3 help-desk corpus (47,837 tickets, 8 classes; see bench/classifier_bench.py):
# word pairs and sublinear tf lift macro-F1 by ~0.006 over plain TF-IDF; C=0.3 with balanced
# class weights is the best of C in 0.2..1; char n-grams scored lower and cost 10x to train.
C = 0.3
# Terms seen once carry more noise than signal at scale (and triple the stored rows), but on a
# small desk every word counts.
MIN_DF_FROM_DOCS = 1000
CALIBRATION_SHARE = 0.1
# Routed automatically when confidence >= the model's threshold. With the fitted temperature,
# confidence tracks the chance of being right; on the corpus 0.6 routes ~88% of tickets at ~92%
# precision, against ~87% accuracy over all tickets. The threshold is chosen at training, on the
# held-out calibration tickets, as the lowest that keeps TARGET_PRECISION of the routed right
# (on the corpus: about 0.79, routing ~77% at ~95%; bench/classifier_bench.py). With fewer than
# MIN_CALIBRATION held-out tickets that choice is noise, and DEFAULT_THRESHOLD stands.
DEFAULT_THRESHOLD = 0.6
TARGET_PRECISION = 0.95
MIN_CALIBRATION = 200

_token = re.compile(TOKEN_PATTERN)

Progress = Callable[[str], None]
Lookup = Callable[[list[str]], Mapping[str, tuple[float, Sequence[float]]]]


def vectorizer_settings(n_docs: int) -> dict[str, Any]:
    """TfidfVectorizer's arguments; `tokenize` reproduces its analyzer exactly."""
    return {"lowercase": True, "token_pattern": TOKEN_PATTERN, "ngram_range": NGRAMS, "sublinear_tf": True,
            "min_df": 2 if n_docs >= MIN_DF_FROM_DOCS else 1}


def tokenize(text: str) -> list[str]:
    """Words then word pairs, in scikit-learn's order: `TfidfVectorizer(**vectorizer_settings(n))
    .build_analyzer()(text)` gives the same list."""
    words = _token.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def _packer(n_classes: int) -> struct.Struct:
    # Little-endian float32, whatever the machine: the database file may move between machines.
    return struct.Struct(f"<{n_classes + 1}f")


def pack(idf: float, weights: Sequence[float]) -> bytes:
    return _packer(len(weights)).pack(idf, *weights)


def unpack(blob: bytes) -> tuple[float, tuple[float, ...]]:
    values = _packer(len(blob) // 4 - 1).unpack(blob)
    return values[0], values[1:]


@dataclass
class Model:
    """A trained linear model as plain data. `terms` maps a term to `pack(idf, weights)` (36 bytes
    for 8 classes, rather than ~400 as Python floats); it is empty for a model read back with
    `from_info`, whose terms come through `predict`'s lookup."""

    classes: list[str]
    intercepts: list[float]
    temperature: float
    threshold: float = DEFAULT_THRESHOLD
    terms: dict[str, bytes] = field(default_factory=dict)
    n_docs: int = 0
    n_terms: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    holdout: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """What the store keeps in classifier_models.info (JSON): everything but the terms."""
        return {"format": FORMAT, "classes": self.classes, "intercepts": self.intercepts,
                "temperature": self.temperature, "threshold": self.threshold,
                "tokenizer": {"token_pattern": TOKEN_PATTERN, "lowercase": True, "ngram_range": list(NGRAMS),
                              "sublinear_tf": True, "norm": "l2"},
                "n_docs": self.n_docs, "n_terms": self.n_terms or len(self.terms),
                "class_counts": self.class_counts, "holdout": self.holdout}

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Model:
        if info.get("format") != FORMAT:
            raise SdeskError(f"the stored classifier has format {info.get('format')}, this sdesk reads {FORMAT}; "
                             "run `sdesk triage train` again")
        return cls(classes=list(info["classes"]), intercepts=[float(b) for b in info["intercepts"]],
                   temperature=float(info["temperature"]), threshold=float(info["threshold"]),
                   n_docs=info["n_docs"], n_terms=info["n_terms"], class_counts=dict(info["class_counts"]),
                   holdout=dict(info["holdout"]))

    def to_rows(self) -> Iterator[tuple[str, bytes]]:
        return iter(self.terms.items())

    def lookup(self, terms: list[str]) -> dict[str, tuple[float, tuple[float, ...]]]:
        """The in-memory lookup, for a model that still holds its terms (eval, tests)."""
        return {t: unpack(b) for t in terms if (b := self.terms.get(t)) is not None}

    def scores(self, text: str, lookup: Lookup) -> list[float]:
        """The SVM's decision scores: l2-normalised sublinear TF-IDF of the known terms, times the
        weights, plus the intercepts (what scikit-learn's decision_function computes)."""
        counts = Counter(tokenize(text))
        found = lookup(list(counts))
        if not found:
            return list(self.intercepts)
        log = math.log
        xs = [(1.0 + log(counts[term])) * idf for term, (idf, _) in found.items()]
        scale = 1.0 / math.sqrt(sum(map(mul, xs, xs)))
        # Column by column with map(): C loops, 3x faster than a Python loop per class on long tickets.
        columns = zip(*(weights for _, weights in found.values()))
        return [b + sum(map(mul, xs, column)) * scale for b, column in zip(self.intercepts, columns)]

    def predict(self, text: str, lookup: Lookup) -> tuple[str, float]:
        """The most likely label and its confidence in [0, 1]: the softmax of the scores divided by
        the temperature fitted on held-out tickets, so that it estimates the chance of being right."""
        scores = self.scores(text, lookup)
        best = max(range(len(scores)), key=scores.__getitem__)  # first on ties, like numpy's argmax
        top = scores[best]
        total = sum(math.exp((s - top) / self.temperature) for s in scores)
        return self.classes[best], 1.0 / total


def train(texts: Sequence[str], labels: Sequence[str], progress: Progress | None = None, *,
          seed: int = 1) -> Model:
    """Learn labels from texts. A tenth of them is held out first to fit the temperature of the
    confidence (and to estimate accuracy); the model kept is then refitted on all of them."""
    from .redact import redact

    say = progress or (lambda message: None)
    # The terms and classes are stored and exported: a token in a training row (a CSV file is
    # read raw, not through the store) would be one. Redacted first, as intake redacts.
    texts = [redact(t)[0] for t in texts]
    labels = [redact(label)[0] for label in labels]
    counts = Counter(labels)
    if len(texts) < MIN_DOCS or len(counts) < MIN_CLASSES:
        raise BadInput(f"too few examples to train: {len(texts)} in {len(counts)} "
                       f"class{'es' if len(counts) != 1 else ''} (needs at least {MIN_DOCS} in {MIN_CLASSES} classes)")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Not converging within max_iter moves the weights by less than the calibration absorbs.
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit_idx, held_idx = split(labels, CALIBRATION_SHARE, seed)
        say(f"calibrating on {len(fit_idx):,} tickets, checking on {len(held_idx):,}")
        vectorizer, svm = _fit([texts[i] for i in fit_idx], [labels[i] for i in fit_idx])
        held_true = [labels[i] for i in held_idx]
        held_scores = _scores(svm, vectorizer.transform([texts[i] for i in held_idx]))
        held_classes = [str(c) for c in svm.classes_]
        position = {c: i for i, c in enumerate(held_classes)}
        temperature = fit_temperature(held_scores, [position.get(y, -1) for y in held_true])
        say(f"training on all {len(texts):,} tickets")
        vectorizer, svm = _fit(texts, labels)
    model = _export(vectorizer, svm, temperature)
    model.n_docs = len(texts)
    model.class_counts = dict(sorted(counts.items()))
    held_pred = [held_classes[max(range(len(s)), key=s.__getitem__)] for s in held_scores]
    held_conf = [_confidence(s, temperature) for s in held_scores]
    if len(held_true) >= MIN_CALIBRATION:
        model.threshold = choose_threshold(held_conf, [t == p for t, p in zip(held_true, held_pred)], TARGET_PRECISION)
    report = evaluate(held_true, held_pred, held_conf, model.threshold)
    model.holdout = {k: report[k] for k in ("n", "accuracy", "macro_f1", "routed_share", "routed_precision")}
    return model


def _fit(texts: Sequence[str], labels: Sequence[str]) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(**vectorizer_settings(len(texts)))
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no term at all, or none left after min_df
        raise BadInput("the texts have no words to learn from") from None
    svm = LinearSVC(C=C, class_weight="balanced", random_state=0).fit(matrix, labels)
    return vectorizer, svm


def _scores(svm: Any, matrix: Any) -> list[list[float]]:
    scores = svm.decision_function(matrix)
    if scores.ndim == 1:  # two classes: one score, for the second class
        return [[0.0, float(s)] for s in scores]
    return scores.tolist()


def _export(vectorizer: Any, svm: Any, temperature: float) -> Model:
    import numpy as np

    coef = svm.coef_
    intercepts = svm.intercept_
    if coef.shape[0] == 1:  # two classes: class 0 scores 0, as in _scores
        coef = np.vstack([np.zeros_like(coef), coef])
        intercepts = np.concatenate([[0.0], intercepts])
    table = np.hstack([vectorizer.idf_[:, None], coef.T]).astype("<f4")
    rows = {term: table[j].tobytes() for term, j in vectorizer.vocabulary_.items()}
    return Model(classes=[str(c) for c in svm.classes_], intercepts=[float(b) for b in intercepts],
                 temperature=temperature, terms=rows, n_terms=len(rows))


def _confidence(scores: Sequence[float], temperature: float) -> float:
    top = max(scores)
    return 1.0 / sum(math.exp((s - top) / temperature) for s in scores)


def choose_threshold(confidences: Sequence[float], right: Sequence[bool], target: float) -> float:
    """The lowest confidence threshold at which the tickets routed (confidence >= it) are at least
    `target` right, on held-out tickets: the most routed for that precision. 1.0 when no threshold
    reaches it (nothing is routed: a person decides every ticket)."""
    ranked = sorted(zip(confidences, right), key=lambda cr: -cr[0])
    best, hits = 1.0, 0
    for n, (confidence, ok) in enumerate(ranked, start=1):
        hits += ok
        # Only where the next ticket's confidence is lower: a threshold cannot split a tie.
        if hits / n >= target and (n == len(ranked) or ranked[n][0] < confidence):
            best = confidence
    return best


def fit_temperature(scores: Sequence[Sequence[float]], truth: Sequence[int]) -> float:
    """The T that minimises the log loss of softmax(scores / T) on held-out tickets (temperature
    scaling). The SVM's scores order the classes well but are not probabilities; one fitted scale
    turns them into confidences that a threshold can mean something with, and it keeps the
    ranking, so it costs no accuracy. The loss is convex in 1/T: a golden-section search finds it.
    Bounded, so that a tiny or perfectly separated hold-out cannot give absurd confidences."""
    pairs = [(s, t) for s, t in zip(scores, truth) if t >= 0]
    if not pairs:
        return 1.0

    def loss(beta: float) -> float:
        total = 0.0
        for s, t in pairs:
            top = max(s)
            total += top * beta + math.log(sum(math.exp((v - top) * beta) for v in s)) - s[t] * beta
        return total

    lo, hi = math.log(0.2), math.log(50.0)  # 1/T between 0.2 and 50
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(math.exp(a)), loss(math.exp(b))
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(math.exp(b))
    return 1.0 / math.exp((lo + hi) / 2)


def split(labels: Sequence[str], test_share: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified, seeded split of indexes into (train, test): each class gives round(n * share)
    of its rows to test, and always keeps at least one for training."""
    if not 0 < test_share < 1:
        raise BadInput(f"--test-share: {test_share} is not between 0 and 1")
    import random

    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = random.Random(seed)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for label in sorted(by_class):
        rows = by_class[label]
        rng.shuffle(rows)
        n_test = min(round(len(rows) * test_share), len(rows) - 1)
        test_idx += rows[:n_test]
        train_idx += rows[n_test:]
    return sorted(train_idx), sorted(test_idx)


def evaluate(true: Sequence[str], predicted: Sequence[str], confidences: Sequence[float],
             threshold: float) -> dict[str, Any]:
    """Accuracy, macro-F1 (the mean of per-class F1 over every class seen in either list, as
    scikit-learn computes it), per-class precision/recall/F1/support, the confusion matrix (rows:
    true class, columns: predicted, in `classes` order), and what routing at `threshold` gives:
    the share of tickets with confidence >= threshold and the precision on them."""
    n = len(true)
    classes = sorted(set(true) | set(predicted))
    index = {c: i for i, c in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for t, p in zip(true, predicted):
        confusion[index[t]][index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, c in enumerate(classes):
        hits = confusion[i][i]
        said = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = hits / said if said else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    correct = sum(t == p for t, p in zip(true, predicted))
    routed = [t == p for t, p, c in zip(true, predicted, confidences) if c >= threshold]
    return {"n": n, "accuracy": correct / n if n else 0.0,
            "macro_f1": sum(m["f1"] for m in per_class.values()) / len(classes) if classes else 0.0,
            "threshold": threshold, "routed": len(routed), "routed_share": len(routed) / n if n else 0.0,
            "routed_precision": sum(routed) / len(routed) if routed else None,
            "classes": classes, "per_class": per_class, "confusion": confusion}

"""The ticket classifier on the full v3 help-desk corpus (47,837 tickets, 8 classes).

Trains on a stratified 80% (seed 1, as `sdesk triage eval`), stores the model in a temporary
database, classifies the other 20% through `ClassifierStore.classify` (the path intake takes:
pure Python, one SQLite lookup per chunk of the ticket's terms), and prints a table: training
time, the median per-ticket classification time, accuracy, macro-F1, and the share routed
automatically at the default threshold with its precision.

    .venv/bin/python bench/classifier_bench.py [--corpus PATH]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sdesk.domain import classifier  # noqa: E402 - after the path is set
from sdesk.domain.labelled import read_labelled  # noqa: E402
from sdesk.store import Store  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "tickets" / "it_service_ticket_classification_v3_kaggle_cc0.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not args.corpus.exists():
        sys.exit(f"no corpus at {args.corpus}")

    data = read_labelled(args.corpus, ["Document"], "Topic_group")
    train_idx, test_idx = classifier.split(data.labels, 0.2, args.seed)
    started = time.perf_counter()
    model = classifier.train([data.texts[i] for i in train_idx], [data.labels[i] for i in train_idx])
    train_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        started = time.perf_counter()
        store.classifier.save_classifier("category", model=model, actor="bench")
        save_s = time.perf_counter() - started
        db_mib = (Path(tmp) / "bench.db").stat().st_size / 2**20
        times, predicted, confidences = [], [], []
        for i in test_idx:
            t0 = time.perf_counter()
            label, confidence, _ = store.classifier.classify("category", text=data.texts[i])
            times.append(time.perf_counter() - t0)
            predicted.append(label)
            confidences.append(confidence)
        store.close()

    report = classifier.evaluate([data.labels[i] for i in test_idx], predicted, confidences, model.threshold)
    ms = sorted(t * 1000 for t in times)
    rows = [
        ("tickets: train / test / skipped", f"{len(train_idx):,} / {len(test_idx):,} / {data.skipped:,}"),
        ("model", f"{len(model.classes)} classes, {model.n_terms:,} terms, temperature {model.temperature:.3f}"),
        ("train (calibrate + refit)", f"{train_s:.1f} s"),
        ("save to SQLite", f"{save_s:.2f} s, database {db_mib:.1f} MiB"),
        ("classify per ticket, median", f"{statistics.median(ms):.3f} ms"),
        ("classify per ticket, p95 / max", f"{ms[int(len(ms) * 0.95)]:.3f} / {ms[-1]:.3f} ms"),
        ("accuracy", f"{report['accuracy']:.4f}"),
        ("macro-F1", f"{report['macro_f1']:.4f}"),
        (f"routed at confidence >= {model.threshold:.3f} (the model's own)",
         f"{report['routed_share']:.1%} ({report['routed']:,})"),
        ("precision of the routed", f"{report['routed_precision']:.1%}"),
    ]
    old = classifier.evaluate([data.labels[i] for i in test_idx], predicted, confidences, classifier.DEFAULT_THRESHOLD)
    rows.append((f"at the old fixed {classifier.DEFAULT_THRESHOLD}",
                 f"{old['routed_share']:.1%} routed, {old['routed_precision']:.1%} right"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()

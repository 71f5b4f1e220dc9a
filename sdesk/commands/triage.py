"""`sdesk triage ...`: the classifier that suggests a ticket's category and queue at intake,
learned from the desk's resolved tickets or from a labelled CSV file."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import BadInput
from .common import Group, note, print_json, settings_of, store_of


class TriageGroup(Group):
    """`sdesk triage ID` re-triages a ticket; `train` and `eval` are the classifier's."""

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["ticket", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=TriageGroup, name="triage", no_args_is_help=True,
                  help="Triage: re-run it on a ticket (sdesk triage SD-42); train and evaluate the classifier "
                       "that fills in category and queue at intake.\n\nExample: sdesk triage SD-42\n\nExample: sdesk triage eval")


@app.command("ticket", hidden=True)
def ticket(
    ctx: typer.Context,
    ticket_ref: Annotated[str, typer.Argument(metavar="TICKET", help="42 or SD-42.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="The changes and the explanation.")] = False,
) -> None:
    """Run triage again on a stored ticket with the current rules and model, and apply what changes.

    Example: sdesk triage SD-42

    Example: sdesk triage ticket 42 --json
    """
    from ..domain.lifecycle import parse_id, ref
    from ..triage import TriageConfig

    settings = settings_of(ctx)
    config = settings.triage_config() or TriageConfig()
    result = settings.store().triage.retriage(ticket_id=parse_id(ticket_ref), config=config, actor=settings.actor)
    if as_json:
        print_json(result)
        return
    changes = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in result["changes"].items())
    note(f"{ref(result['id'])}: {changes or 'nothing changed'} (sdesk why {ref(result['id'])} explains)")


class Field(str, Enum):
    category = "category"
    queue = "queue"


CsvOpt = Annotated[Optional[Path], typer.Option("--from-csv", help="A labelled .csv file, or a .zip holding one.", dir_okay=False, show_default=False)]
TextOpt = Annotated[list[str], typer.Option("--text", help="A column with ticket text; repeatable (joined by newlines).", show_default=False)]
LabelOpt = Annotated[Optional[str], typer.Option("--label", help="The column with the right answer.", show_default=False)]


def _read_csv(path: Path, text: list[str], label: Optional[str]) -> Any:
    from ..domain.labelled import read_labelled

    if not text:
        raise BadInput("--from-csv needs --text COLUMN (the ticket text)")
    if not label:
        raise BadInput("--from-csv needs --label COLUMN (the right answer)")
    data = read_labelled(path, text, label)
    note(f"{path}: {len(data.texts):,} labelled rows" + (f", {data.skipped:,} skipped (empty text or label)" if data.skipped else ""))
    return data


def _enough(examples: list[tuple[str, str]]) -> bool:
    from ..domain.classifier import MIN_CLASSES, MIN_DOCS

    return len(examples) >= MIN_DOCS and len({label for _, label in examples}) >= MIN_CLASSES


def _describe(examples: list[tuple[str, str]]) -> str:
    n, n_classes = len(examples), len({label for _, label in examples})
    return f"{n} resolved ticket{'' if n == 1 else 's'} in {n_classes} class{'' if n_classes == 1 else 'es'}"


@app.command()
def train(
    ctx: typer.Context,
    field: Annotated[Optional[Field], typer.Option("--field", help="The field to learn (default: category, and queue when tickets have one).", show_default=False)] = None,
    from_csv: CsvOpt = None, text: TextOpt = [], label: LabelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="What was trained, as JSON.")] = False,
) -> None:
    """Learn category (and queue) from resolved tickets, or from a labelled CSV file.

    Trains on the desk's resolved and closed tickets where the field is set, and stores the
    model in the desk, so that intake can fill the field in when it is confident.

    Example: sdesk triage train

    Example: sdesk triage train --field queue

    Example: sdesk triage train --from-csv tickets.zip --text Document --label Topic_group
    """
    from ..domain.classifier import MIN_CLASSES, MIN_DOCS

    store = store_of(ctx)
    if from_csv is None:
        if text or label:
            raise BadInput(f"{'--text' if text else '--label'} needs --from-csv FILE")
        fields = [field.value] if field else ["category", "queue"]
        sets = {f: store.classifier.training_tickets(f) for f in fields}
        wanted = {f: rows for f, rows in sets.items() if _enough(rows)}
        if not wanted:
            counts = ", ".join(f"{f} has {_describe(rows)}" for f, rows in sets.items())
            raise BadInput(f"too few examples to train: {counts} (needs at least {MIN_DOCS} in {MIN_CLASSES} classes)")
        for f in sets.keys() - wanted.keys():
            note(f"{f}: not trained, {_describe(sets[f])} (needs at least {MIN_DOCS} in {MIN_CLASSES} classes)")
        sources = {f: ([t for t, _ in rows], [v for _, v in rows], 0, "desk") for f, rows in wanted.items()}
    else:
        data = _read_csv(from_csv, text, label)
        f = field.value if field else "category"
        sources = {f: (data.texts, data.labels, data.skipped, str(from_csv))}
    trained = {}
    for f, (texts, labels, skipped, source) in sources.items():
        model = _train(f, texts, labels)
        store.classifier.save_classifier(f, model=model, actor=settings_of(ctx).actor)
        trained[f] = {"field": f, "source": source, "trained_at": store.classifier.classifier_info(f)["trained_at"],
                      "docs": model.n_docs,
                      "skipped": skipped, "terms": model.n_terms, "classes": model.classes,
                      "class_counts": model.class_counts, "temperature": model.temperature,
                      "threshold": model.threshold, "holdout": model.holdout}
    if as_json:
        print_json(trained)
        return
    from ..render import table

    for t in trained.values():
        h = t["holdout"]
        from ..domain.plain import plural
        print(f"{t['field']}: {plural(len(t['classes']), 'class', 'classes')} from {plural(t['docs'], 'ticket')}, "
              f"{plural(t['terms'], 'term')}")
        print(f"  held out {h['n']:,}: accuracy {h['accuracy']:.3f}, macro-F1 {h['macro_f1']:.3f}; at confidence "
              f">= {round(t['threshold'], 3):g}: {h['routed_share']:.0%} routed, {_pct(h['routed_precision'])} of them right")
        table(["class", "tickets"], [[c, f"{n:,}"] for c, n in t["class_counts"].items()])


def _train(field: str, texts: list[str], labels: list[str]) -> Any:
    from ..domain.classifier import train as fit
    from ..domain.plain import plural
    note(f"{field}: training on {plural(len(texts), 'ticket')}")
    return fit(texts, labels, progress=lambda message: note(f"{field}: {message}"))


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1%}"


@app.command("eval")
def eval_(
    ctx: typer.Context,
    from_csv: Annotated[Path, typer.Option("--from-csv", help="A labelled .csv file, or a .zip holding one.", dir_okay=False, show_default=False)],
    text: TextOpt = [], label: LabelOpt = None,
    stored: Annotated[bool, typer.Option("--model", help="Score the desk's stored model (of --field) on every row, without training: a drift check.")] = False,
    field: Annotated[Field, typer.Option("--field", help="With --model: the stored model to score.")] = Field.category,
    test_share: Annotated[float, typer.Option("--test-share", help="The share of rows held out for testing (stratified by label).")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 1,
    threshold: Annotated[Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Confidence at which a ticket is routed automatically (default: the model's).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The numbers as JSON.")] = False,
) -> None:
    """Measure the classifier on a labelled file: train on one part, test on the rest.

    Prints accuracy, macro-F1, per-class precision and recall, the confusion matrix, and the
    share of tickets routed automatically at the confidence threshold with the precision on
    them. Does not touch the desk.

    Example: sdesk triage eval --from-csv tickets.zip --text Document --label Topic_group

    Example: sdesk triage eval --from-csv tickets.csv --text title --text body --label queue --json

    Example: sdesk triage eval --model --from-csv last-month.csv --text title --label category
    """
    from ..domain.classifier import evaluate, split

    data = _read_csv(from_csv, text, label)
    if stored:
        _eval_stored(ctx, data, field.value, threshold, as_json)
        return
    train_idx, test_idx = split(data.labels, test_share, seed)
    if not test_idx:
        raise BadInput(f"--test-share: {test_share} of {len(data.texts)} rows leaves nothing to test")
    model = _train("eval", [data.texts[i] for i in train_idx], [data.labels[i] for i in train_idx])
    note(f"eval: classifying {len(test_idx):,} held-out tickets")
    predictions = [model.predict(data.texts[i], model.lookup) for i in test_idx]
    report = evaluate([data.labels[i] for i in test_idx], [p for p, _ in predictions],
                      [c for _, c in predictions], model.threshold if threshold is None else threshold)
    report = {**report, "train": len(train_idx), "test": len(test_idx), "skipped": data.skipped,
              "test_share": test_share, "seed": seed, "terms": model.n_terms, "temperature": model.temperature}
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _eval_stored(ctx: typer.Context, data: Any, field: str, threshold: Optional[float], as_json: bool) -> None:
    """The desk's stored model on every labelled row, as intake classifies (its terms read from
    the store), at its own threshold unless --threshold."""
    from ..domain.classifier import evaluate
    from ..errors import NotFound

    store = store_of(ctx)
    info = store.classifier.classifier_info(field)
    if info is None:
        raise NotFound(f"no stored model for {field}: sdesk triage train --field {field}")
    note(f"eval: classifying {len(data.texts):,} tickets with the {field} model trained {info['trained_at']}")
    guesses = [store.classifier.classify(field, text=t) for t in data.texts]
    report = evaluate(data.labels, [g[0] for g in guesses], [g[1] for g in guesses],
                      info["threshold"] if threshold is None else threshold)
    unknown = sorted(set(data.labels) - set(info["classes"]))
    report = {**report, "model": {"field": field, "trained_at": info["trained_at"], "docs": info["n_docs"],
                                  "threshold": info["threshold"], "holdout": info["holdout"]},
              "test": len(data.texts), "skipped": data.skipped, "labels_unknown_to_model": unknown}
    if as_json:
        print_json(report)
        return
    if unknown:
        note(f"warning: labels the model never learned: {', '.join(unknown[:10])}")
    _print_report(report)
    held = info["holdout"]
    if held.get("routed_precision") is not None and report["routed_precision"] is not None:
        drift = report["routed_precision"] - held["routed_precision"]
        print(f"routed precision {report['routed_precision']:.1%} against {held['routed_precision']:.1%} when trained "
              f"({drift:+.1%})")


def _print_report(r: dict[str, Any]) -> None:
    from ..domain.plain import plural
    from ..render import table

    if "model" in r:
        print(f"stored {r['model']['field']} model (trained {r['model']['trained_at']} on "
              f"{plural(r['model']['docs'], 'ticket')}) / test {plural(r['test'], 'ticket')}"
              + (f", {plural(r['skipped'], 'row')} skipped" if r["skipped"] else ""))
    else:
        print(f"train {r['train']:,} / test {plural(r['test'], 'ticket')} (seed {r['seed']})"
              + (f", {plural(r['skipped'], 'row')} skipped" if r["skipped"] else ""))
    print(f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}")
    print(f"at confidence >= {round(r['threshold'], 3):g}: {r['routed']:,} routed automatically ({r['routed_share']:.1%}), "
          f"precision {_pct(r['routed_precision'])}")
    table(["class", "precision", "recall", "f1", "support"],
          [[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
           for c, m in r["per_class"].items()])
    print("confusion (rows: true class, columns: predicted, in the order of the rows)")
    table(["true \\ predicted", *(str(i + 1) for i in range(len(r["classes"])))],
          [[f"{i + 1} {c}", *row] for i, (c, row) in enumerate(zip(r["classes"], r["confusion"]))])

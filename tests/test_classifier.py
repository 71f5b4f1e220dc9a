"""The ticket classifier: training (scikit-learn), the exported model in the store, classifying
without scikit-learn, evaluation, labelled CSV files, and `sdesk triage train|eval`."""

import csv
import io
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rawdb
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from sdesk.domain import classifier
from sdesk.domain.labelled import read_labelled
from sdesk.errors import BadInput, ExitCode
from sdesk.store import Store

pytest.importorskip("sklearn", reason="training needs the ml extra (scikit-learn)")

ROOT = Path(__file__).resolve().parents[1]
TICKETS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "tickets"
SAMPLE = TICKETS / "it_service_tickets_v3_sample_300_per_class.csv"
FULL = TICKETS / "it_service_ticket_classification_v3_kaggle_cc0.zip"
needs_corpus = pytest.mark.skipif(not TICKETS.is_dir(), reason=f"the ticket corpus is not at {TICKETS}")

VOCAB = {
    "Access": "password login account locked reset vpn mfa token permission denied",
    "Hardware": "laptop screen keyboard mouse dock battery charger monitor broken printer",
    "Storage": "disk quota share drive onedrive folder space full mailbox archive",
    "Purchase": "order invoice license quote supplier buy purchase approval budget",
}
NOISE = ["please", "thanks", "hello", "regards", "urgent", "issue", "help", "team", "today", "since"]


def synthetic(n: int, classes: list[str], seed: int = 7) -> tuple[list[str], list[str]]:
    """Tickets whose words mostly, but not only, come from their class's vocabulary."""
    rng = random.Random(seed)
    pool = sorted({w for c in classes for w in VOCAB[c].split()})
    texts, labels = [], []
    for i in range(n):
        label = classes[i % len(classes)]
        own = VOCAB[label].split()
        words = [rng.choice(own if rng.random() < 0.55 else pool if rng.random() < 0.6 else NOISE)
                 for _ in range(rng.randint(3, 14))]
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def sklearn_model(texts: list[str], labels: list[str]):
    """scikit-learn's own model, fitted as `classifier.train` fits the one it keeps."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(**classifier.vectorizer_settings(len(texts)))
    svm = LinearSVC(C=classifier.C, class_weight="balanced", random_state=0).fit(vectorizer.fit_transform(texts), labels)
    return vectorizer, svm


def write_csv(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8", newline="")
    return path


# -- the tokenizer ---------------------------------------------------------------------

SAMPLE_TEXTS = [
    "Printer on 3rd floor jams; error E-42 (again!)",
    "VPN can't connect: 'timeout' after MFA — résumé attached, ÉLAN naïve café",
    "a b c ab_cd x1 12 __init__ foo-bar foo.bar\nnew line\ttab",
    "İstanbul ΣΊΣΥΦΟΣ straße ﬁle ½ ² ٣٤ 東京 タワー",
    "",
    "   ",
]


def _sklearn_analyzer(n_docs: int):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**classifier.vectorizer_settings(n_docs)).build_analyzer()


@pytest.mark.parametrize("text", SAMPLE_TEXTS)
def test_tokenizer_is_sklearns_analyzer_words_and_pairs(text):
    for n_docs in (20, 10_000):  # both min_df regimes: the analyzer must not depend on it
        assert classifier.tokenize(text) == _sklearn_analyzer(n_docs)(text)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
       | st.lists(st.sampled_from(["disk", "Full", "DB-3", "é", " ", "\n", "_", "42", "x", "ΣΑ", "'", "-"]))
       .map("".join))
def test_tokenizer_equals_sklearn_on_any_text(text):
    assert classifier.tokenize(text) == _sklearn_analyzer(100)(text)


@needs_corpus
def test_tokenizer_equals_sklearn_on_corpus_tickets():
    analyzer = _sklearn_analyzer(2400)
    data = read_labelled(SAMPLE, ["Document"], "Topic_group")
    for text in data.texts[::10]:
        assert classifier.tokenize(text) == analyzer(text)


# -- the model through the store gives scikit-learn's decisions ------------------------------

def _datasets():
    yield pytest.param(*synthetic(400, list(VOCAB)), id="synthetic-4-classes")
    yield pytest.param(*synthetic(120, ["Access", "Hardware"]), id="synthetic-2-classes")
    if SAMPLE.exists():
        data = read_labelled(SAMPLE, ["Document"], "Topic_group")
        yield pytest.param(data.texts, data.labels, id="corpus-sample")


@pytest.mark.parametrize(("texts", "labels"), list(_datasets()))
def test_stored_model_decides_as_sklearn_does(tmp_path, texts, labels):
    train_idx, test_idx = classifier.split(labels, 0.2, seed=1)
    train_texts, train_labels = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
    model = classifier.train(train_texts, train_labels)
    with Store(tmp_path / "m.db") as store:
        store.classifier.save_classifier("category", model=model, actor="tester")
    vectorizer, svm = sklearn_model(train_texts, train_labels)
    held = [texts[i] for i in test_idx]
    expected = svm.predict(vectorizer.transform(held))
    decisions = svm.decision_function(vectorizer.transform(held))
    with Store(tmp_path / "m.db") as store:  # a new process's view: info and terms from disk
        got = [store.classifier.classify("category", text=text) for text in held]
    assert all(0.0 <= confidence <= 1.0 and threshold == model.threshold for _, confidence, threshold in got)
    for text, (label, _, _), want, decision in zip(held, got, expected, decisions):
        ours = model.scores(text, model.lookup)
        if decision.ndim == 0:  # two classes: scikit-learn gives the second class's score
            decision = [0.0, float(decision)]
        assert ours == pytest.approx(list(decision), abs=1e-4)  # weights are stored as float32
        if label != want:  # only a float32 rounding of a near tie may flip a decision
            top = sorted(decision)[-2:]
            assert top[1] - top[0] < 1e-4, (text, label, want)
    agree = sum(label == want for (label, _, _), want in zip(got, expected)) / len(held)
    assert agree >= 0.995


def test_a_long_running_process_sees_a_model_retrained_elsewhere(tmp_path):
    first = classifier.train(*synthetic(100, ["Access", "Hardware"]))
    second = classifier.train(*synthetic(100, ["Storage", "Purchase"]))
    with Store(tmp_path / "m.db") as serving, Store(tmp_path / "m.db") as training:
        assert serving.classifier.classify("category", text="disk quota full") is None
        training.classifier.save_classifier("category", model=first, actor="tester")
        assert serving.classifier.classify("category", text="disk quota full")[0] in ("Access", "Hardware")
        training.classifier.save_classifier("category", model=second, actor="tester")  # same second
        assert serving.classifier.classify("category", text="disk quota full")[0] == "Storage"
        assert serving.classifier.classifier_info("category")["classes"] == ["Purchase", "Storage"]


def test_confidence_ranks_right_answers_above_wrong_ones():
    texts, labels = synthetic(800, list(VOCAB), seed=3)
    train_idx, test_idx = classifier.split(labels, 0.25, seed=2)
    model = classifier.train([texts[i] for i in train_idx], [labels[i] for i in train_idx])
    assert 0.01 < model.temperature < 10
    results = [(model.predict(texts[i], model.lookup), labels[i]) for i in test_idx]
    right = [c for (p, c), y in results if p == y]
    wrong = [c for (p, c), y in results if p != y]
    assert right and wrong and sum(right) / len(right) > sum(wrong) / len(wrong)
    report = classifier.evaluate([y for _, y in results], [p for (p, _), _ in results], [c for (_, c), _ in results], 0.6)
    assert report["routed_precision"] > report["accuracy"]


def test_too_few_examples_is_one_line():
    with pytest.raises(BadInput, match=r"too few examples to train: 19 in 2 classes \(needs at least 20"):
        classifier.train(*synthetic(19, ["Access", "Hardware"]))
    with pytest.raises(BadInput, match="25 in 1 class "):
        classifier.train(*synthetic(25, ["Access"]))


def test_unknown_words_give_the_prior_and_low_confidence():
    model = classifier.train(*synthetic(200, list(VOCAB)))
    label, confidence = model.predict("zzzz qqqq", model.lookup)
    assert label in VOCAB and confidence < 0.6


# -- evaluate() and split() ---------------------------------------------------------------

def test_evaluate_on_a_hand_made_example():
    true = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "c", "c"]
    confidence = [0.9, 0.5, 0.7, 0.8, 0.3, 0.95]
    r = classifier.evaluate(true, predicted, confidence, 0.6)
    assert r["classes"] == ["a", "b", "c"]
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert r["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # Routed: confidence >= 0.6 -> tickets 1, 3, 4, 6, of which 3 are right.
    assert (r["routed"], r["routed_share"], r["routed_precision"]) == (4, pytest.approx(4 / 6), 0.75)
    assert classifier.evaluate(true, predicted, confidence, 0.99)["routed_precision"] is None


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcde")), min_size=1, max_size=60))
def test_evaluate_agrees_with_sklearn_metrics(pairs):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    true, predicted = [t for t, _ in pairs], [p for _, p in pairs]
    r = classifier.evaluate(true, predicted, [1.0] * len(pairs), 0.5)
    assert r["accuracy"] == pytest.approx(accuracy_score(true, predicted))
    assert r["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro", zero_division=0))
    p, rec, _, support = precision_recall_fscore_support(true, predicted, labels=r["classes"], zero_division=0)
    assert [r["per_class"][c]["precision"] for c in r["classes"]] == pytest.approx(list(p))
    assert [r["per_class"][c]["recall"] for c in r["classes"]] == pytest.approx(list(rec))
    assert [r["per_class"][c]["support"] for c in r["classes"]] == list(support)
    assert r["confusion"] == confusion_matrix(true, predicted, labels=r["classes"]).tolist()


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.sampled_from("abcde"), max_size=200), st.floats(0.05, 0.95), st.integers(0, 5))
def test_split_is_stratified_seeded_and_complete(labels, share, seed):
    train, test = classifier.split(labels, share, seed)
    assert sorted(train + test) == list(range(len(labels)))
    assert (train, test) == classifier.split(labels, share, seed)
    for c in set(labels):
        n = labels.count(c)
        assert sum(labels[i] == c for i in test) == min(round(n * share), n - 1)


# -- labelled CSV files ----------------------------------------------------------------

def test_read_labelled_csv_zip_bom_several_text_columns_and_skipped_rows(tmp_path):
    rows = [["title", "body", "queue"], ["Disk full", "on db-3", "ops"], ["", "", "ops"], ["No label", "x", " "],
            ["Only title", "", "desk"], []]
    plain = write_csv(tmp_path / "t.csv", rows, bom=True)
    data = read_labelled(plain, ["title", "body"], "queue")
    assert (data.texts, data.labels, data.skipped) == (["Disk full\non db-3", "Only title"], ["ops", "desk"], 2)
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(plain, "inside/tickets.csv")
    assert read_labelled(archive, ["title", "body"], "queue") == data


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: write_csv(p / "t.csv", [["Document", "Topic"], ["a", "b"]]),
     "t.csv: no column 'Topic_group'; the columns are: 'Document', 'Topic'"),
    (lambda p: (p / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\xfa") and p / "t.png",
     "t.png: not a CSV file (not UTF-8 text"),
    (lambda p: zipfile.ZipFile(p / "t.zip", "w").close() or p / "t.zip", "the zip must hold exactly one CSV file, it holds 0"),
    (lambda p: _zip(p / "t.zip", {"a.csv": "x", "b.csv": "y"}), "it holds 2 (a.csv, b.csv)"),
    (lambda p: (p / "t.csv").write_text("") and p / "t.csv" or p / "t.csv", "t.csv: empty file, no header row"),
    (lambda p: p / "missing.csv", "cannot read"),
])
def test_read_labelled_errors_are_one_line(tmp_path, make, message):
    with pytest.raises(BadInput) as error:
        read_labelled(make(tmp_path), ["Document"], "Topic_group")
    assert message in str(error.value) and "\n" not in str(error.value)


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


cell = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.tuples(cell, cell, cell), max_size=20), st.booleans())
def test_read_labelled_round_trips_any_csv(tmp_path_factory, rows, bom):
    path = write_csv(tmp_path_factory.mktemp("csv") / "t.csv", [["t1", "t2", "label"], *map(list, rows)], bom=bom)
    data = read_labelled(path, ["t1", "t2"], "label")
    expected = [("\n".join(p for p in (a.strip(), b.strip()) if p), c.strip()) for a, b, c in rows]
    kept = [(text, label) for text, label in expected if text and label]
    assert list(zip(data.texts, data.labels)) == kept
    assert data.skipped == len(expected) - len(kept)


# -- the commands ------------------------------------------------------------------------

def test_train_from_csv_then_classify(cli, tmp_path, db_path):
    texts, labels = synthetic(300, list(VOCAB))
    rows = [["title", "body", "team"], *([t.split(" ", 1)[0], t, lab] for t, lab in zip(texts, labels)), ["", "", "x"]]
    path = write_csv(tmp_path / "tickets.csv", rows)
    out = cli.json("triage", "train", "--from-csv", str(path), "--text", "title", "--text", "body",
                   "--label", "team", "--field", "queue")
    q = out["queue"]
    assert (q["docs"], q["skipped"], q["classes"], q["source"]) == (300, 1, sorted(VOCAB), str(path))
    assert q["terms"] > 40 and 0 < q["holdout"]["accuracy"] <= 1 and q["threshold"] == classifier.DEFAULT_THRESHOLD
    with Store(db_path) as store:
        label, confidence, _ = store.classifier.classify("queue", text="my laptop battery and charger are broken")
        assert label == "Hardware" and confidence >= classifier.DEFAULT_THRESHOLD
        assert store.classifier.classify("category", text="anything") is None  # no model for that field
        info = store.classifier.classifier_info("queue")
        assert info["n_docs"] == 300 and info["classes"] == sorted(VOCAB)
        terms = store.conn.execute("SELECT count(*) FROM classifier_terms WHERE field = 'queue'").fetchone()[0]
        assert terms == q["terms"]
    # Retraining replaces the model, leaving no terms of the old one behind.
    cli("triage", "train", "--from-csv", str(path), "--text", "title", "--label", "team", "--field", "queue")
    conn = rawdb.connect(db_path)
    info = json.loads(conn.execute("SELECT info FROM classifier_models WHERE field = 'queue'").fetchone()[0])
    assert conn.execute("SELECT count(*) FROM classifier_terms").fetchone()[0] == info["n_terms"] < q["terms"]
    human = cli("triage", "train", "--from-csv", str(path), "--text", "body", "--label", "team")
    assert human.stdout.startswith("category: 4 classes from 300 tickets") and "Hardware" in human.stdout
    assert "training on 300 tickets" in human.stderr


def test_train_from_the_desks_resolved_tickets(cli, db_path):
    texts, labels = synthetic(40, list(VOCAB), seed=11)
    tickets = [{"title": t.split(" ", 1)[0], "description": t, "category": lab} for t, lab in zip(texts, labels)]
    tickets[0]["queue"] = "desk"  # too few queues to learn from
    cli("new", "-", input=json.dumps(tickets))
    result = cli("triage", "train", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == ("error: too few examples to train: category has 0 resolved tickets in 0 classes, queue has 0 "
                             "resolved tickets in 0 classes (needs at least 20 in 2 classes)\n")
    for ticket_id in range(1, 31):
        cli("resolve", str(ticket_id), "-r", "done")
    out = cli("triage", "train", "--json")
    assert list(out.stdout and json.loads(out.stdout)) == ["category"]
    assert "queue: not trained, 1 resolved ticket in 1 class" in out.stderr
    assert json.loads(out.stdout)["category"]["docs"] == 30
    with Store(db_path) as store:
        assert store.classifier.training_tickets("category")[0] == (tickets[0]["title"] + "\n" + texts[0], labels[0])
        assert store.classifier.classify("category", text="password reset for my locked account")[0] == "Access"
    result = cli("triage", "train", "--field", "queue", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "queue has 1 resolved ticket in 1 class" in result.stderr


def test_command_errors_are_one_line(cli, tmp_path, db_path):
    path = write_csv(tmp_path / "t.csv", [["Document", "Topic_group"], ["a", "b"]])
    for args, message in [
        (["train", "--from-csv", str(path), "--label", "Topic_group"], "error: --from-csv needs --text COLUMN"),
        (["train", "--text", "Document"], "error: --text needs --from-csv FILE"),
        (["eval", "--from-csv", str(path), "--text", "Body", "--label", "Topic_group"],
         "error: " + f"{path}: no column 'Body'; the columns are: 'Document', 'Topic_group'"),
        (["eval", "--from-csv", str(path), "--text", "Document", "--label", "Topic_group", "--test-share", "1.5"],
         "error: --test-share: 1.5 is not between 0 and 1"),
    ]:
        result = cli("triage", *args, ok=False)
        assert result.exit_code == ExitCode.BAD_INPUT and result.stderr.splitlines()[-1].startswith(message), result.stderr


@needs_corpus
def test_eval_json_on_the_corpus_sample(cli, db_path):
    r = cli.json("triage", "eval", "--from-csv", str(SAMPLE), "--text", "Document", "--label", "Topic_group")
    assert (r["train"], r["test"], r["skipped"], r["seed"], r["test_share"]) == (1920, 480, 0, 1, 0.2)
    assert len(r["classes"]) == 8 and all(m["support"] == 60 for m in r["per_class"].values())
    assert sum(map(sum, r["confusion"])) == 480
    assert r["macro_f1"] > 0.75 and r["accuracy"] > 0.75
    assert r["threshold"] == classifier.DEFAULT_THRESHOLD and r["routed_share"] > 0.6
    assert r["routed_precision"] > r["accuracy"] + 0.05
    # eval never opens the desk: no file made, no table in the PostgreSQL desk's schema
    assert (rawdb.content(db_path) == []) if rawdb.is_pg(db_path) else not db_path.exists()
    human = cli("triage", "eval", "--from-csv", str(SAMPLE), "--text", "Document", "--label", "Topic_group",
                "--threshold", "0.9", "--seed", "2")
    assert "train 1,920 / test 480 tickets (seed 2)" in human.stdout and "at confidence >= 0.9:" in human.stdout


@pytest.mark.slow
@needs_corpus
def test_slow_full_corpus_reaches_macro_f1_086(cli):
    """The issue's bar, on all 47,837 tickets (80/20, seed 1). Slow: about 20-40 s.
    Deselect with -m 'not slow'."""
    r = cli.json("triage", "eval", "--from-csv", str(FULL), "--text", "Document", "--label", "Topic_group")
    assert (r["train"], r["test"]) == (38270, 9567)
    assert r["macro_f1"] >= 0.86
    # Issue 24: the threshold chosen at training for 95% precision on the calibration tickets
    # (about 0.79): measured 94.8% right at 76.9% routed on the test tickets (0.6 gave 91.7% at 87.6%).
    assert r["threshold"] > classifier.DEFAULT_THRESHOLD
    assert r["routed_share"] >= 0.75 and r["routed_precision"] >= 0.94


def test_classifying_imports_no_numpy_scipy_or_sklearn(cli, tmp_path, db_path):
    texts, labels = synthetic(100, list(VOCAB))
    path = write_csv(tmp_path / "t.csv", [["text", "label"], *zip(texts, labels)])
    cli("triage", "train", "--from-csv", str(path), "--text", "text", "--label", "label")
    code = (
        "import sys\n"
        "from sdesk.store import Store\n"
        f"label, confidence, _ = Store({str(db_path)!r}).classifier.classify('category', text='printer screen broken')\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy', 'sklearn'})\n"
        "print(label, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Hardware []"


# -- issue 24: the threshold chosen for precision, and the stored model measured on a file ---------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60),
       st.sampled_from([0.5, 0.9, 0.95, 1.0]))
def test_the_chosen_threshold_routes_the_most_at_the_target_precision(pairs, target):
    confidences, right = [c for c, _ in pairs], [r for _, r in pairs]
    t = classifier.choose_threshold(confidences, right, target)

    def routed(th):
        return [r for c, r in pairs if c >= th]

    if t < 1.0 or routed(1.0) and sum(routed(1.0)) / len(routed(1.0)) >= target:
        assert routed(t) and sum(routed(t)) / len(routed(t)) >= target
    # No lower threshold (one of the confidences) also reaches the target with more routed.
    for c in set(confidences):
        if c < t and sum(routed(c)) / len(routed(c)) >= target:
            pytest.fail(f"{c} routes more at the target than {t}")


def test_a_small_desk_keeps_the_default_threshold_and_a_big_one_chooses_its_own():
    texts, labels = synthetic(300, list(VOCAB))
    assert classifier.train(texts, labels).threshold == classifier.DEFAULT_THRESHOLD  # 30 held out: noise
    texts, labels = synthetic(2500, list(VOCAB))
    model = classifier.train(texts, labels)
    assert model.threshold != classifier.DEFAULT_THRESHOLD
    assert model.holdout["routed_precision"] >= classifier.TARGET_PRECISION


def test_intake_routes_at_the_models_threshold_unless_triage_yaml_sets_one(cli, tmp_path, db_path):
    texts, labels = synthetic(2500, list(VOCAB))
    path = write_csv(tmp_path / "t.csv", [["text", "label"], *zip(texts, labels)])
    trained = cli.json("triage", "train", "--from-csv", str(path), "--text", "text", "--label", "label")["category"]
    ticket = cli.new("my laptop battery and charger are broken")
    why = cli.json("why", str(ticket))
    assert why["triage"]["classifier"]["category"]["threshold"] == pytest.approx(trained["threshold"], abs=1e-4)
    (tmp_path / "config" / "triage.yaml").write_text("classifier:\n  threshold: 0.99\n")
    other = cli.new("my laptop battery and charger are broken")
    assert cli.json("why", str(other))["triage"]["classifier"]["category"]["threshold"] == 0.99


def test_eval_model_scores_the_stored_model_on_a_file_without_training(cli, tmp_path, db_path):
    texts, labels = synthetic(600, list(VOCAB))
    path = write_csv(tmp_path / "t.csv", [["text", "label"], *zip(texts, labels)])
    cli("init")
    missing = cli("triage", "eval", "--model", "--from-csv", str(path), "--text", "text", "--label", "label", ok=False)
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert missing.stderr.strip().splitlines()[-1] == "error: no stored model for category: sdesk triage train --field category"
    cli("triage", "train", "--from-csv", str(path), "--text", "text", "--label", "label")
    before = rawdb.content(db_path)
    drifted = [label if i % 4 else "Elsewhere" for i, label in enumerate(labels)]  # a quarter relabelled
    path2 = write_csv(tmp_path / "later.csv", [["text", "label"], *zip(texts, drifted)])
    r = cli.json("triage", "eval", "--model", "--from-csv", str(path2), "--text", "text", "--label", "label")
    assert r["test"] == 600 and r["model"]["field"] == "category" and r["labels_unknown_to_model"] == ["Elsewhere"]
    assert sum(map(sum, r["confusion"])) == 600
    assert r["accuracy"] <= 0.76  # the relabelled quarter is wrong whatever the model says
    with Store(db_path) as store:
        guesses = [store.classifier.classify("category", text=t) for t in texts]
    right = sum(g[0] == want for g, want in zip(guesses, drifted))
    assert r["accuracy"] == pytest.approx(right / 600)
    assert rawdb.content(db_path) == before  # scoring writes nothing
    human = cli("triage", "eval", "--model", "--from-csv", str(path2), "--text", "text", "--label", "label")
    assert "stored category model" in human.stdout and "when trained" in human.stdout
    assert "labels the model never learned: Elsewhere" in human.stderr

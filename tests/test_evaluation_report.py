"""worker/evaluation_report.py computed a second way: the confusion matrix and per-class
precision, recall, F1 and support against scikit-learn's; the regression sample's bounds; and
the names every upload format records (core/uploads), with a length mismatch refused naming
the field. No services: pure functions on arrays and files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from core import datasets
from core.dataset_store import describe_parsed
from core.uploads.formats import ParseOptions, parse_upload
from core.uploads.parsed import UploadError
from worker.evaluation_report import (
    MAX_MATRIX_CLASSES,
    MAX_PAIRS,
    classification_report,
    evaluation_report,
    multilabel_report,
    regression_report,
)


def test_the_confusion_matrix_and_per_class_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, 500)
    predicted = np.where(rng.random(500) < 0.7, true, rng.integers(0, 6, 500))
    predicted[predicted == 5] = 4  # class 5 is never predicted: its precision is undefined
    names = ["a", "b", "c", "d", "e", "f"]
    report = classification_report(predicted, true, names, 6)

    np.testing.assert_array_equal(report["matrix"], confusion_matrix(true, predicted,
                                                                     labels=range(6)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=range(6), zero_division=np.nan)
    rows = report["per_class"]
    assert [row["name"] for row in rows] == names
    assert [row["support"] for row in rows] == support.tolist()
    for row, p, r, f in zip(rows, precision, recall, f1, strict=True):
        assert (row["precision"] is None) == bool(np.isnan(p))
        if row["precision"] is not None:
            assert row["precision"] == pytest.approx(p, rel=1e-5)
            assert row["f1"] == pytest.approx(f, rel=1e-5)
        assert row["recall"] == pytest.approx(r, rel=1e-5)
    assert report["accuracy"] == pytest.approx(np.mean(true == predicted), rel=1e-5)
    top = report["top_confusions"][0]
    matrix = np.array(report["matrix"])
    np.fill_diagonal(matrix, 0)
    assert top["count"] == matrix.max()


def test_many_classes_keep_the_largest_confusions_but_not_the_matrix():
    classes = MAX_MATRIX_CLASSES + 1
    true = np.arange(classes * 3) % classes
    predicted = (true + (np.arange(len(true)) % 3 == 0)) % classes
    report = classification_report(predicted, true, None, classes)
    assert report["matrix"] is None
    assert len(report["per_class"]) == classes and report["class_names"][-1] == str(classes - 1)
    assert 0 < len(report["top_confusions"]) <= 20
    assert len(json.dumps(report)) < 40_000


def test_a_binary_logit_network_is_read_as_two_classes():
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.zero_()
    x = torch.tensor([[-2.0], [-1.0], [1.0], [3.0]])
    report = evaluation_report(model, x, torch.tensor([0, 1, 1, 1]), "classification",
                               ("no", "yes"), 2)
    assert report["matrix"] == [[1, 0], [1, 2]]
    assert report["class_names"] == ["no", "yes"]


def test_multilabel_metrics_are_per_label():
    true = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=bool)
    predicted = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    report = multilabel_report(predicted, true, ["left", "right"])
    left, right = report["per_label"]
    assert (left["name"], left["precision"], left["recall"], left["support"]) == \
        ("left", 0.5, 0.5, 2)
    assert (right["precision"], right["recall"]) == (1.0, 1.0)


def test_the_regression_sample_is_bounded_and_the_same_each_time():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(2000, 1))
    predicted = true + rng.normal(scale=0.1, size=true.shape)
    report = regression_report(predicted, true)
    output = report["outputs"][0]
    assert report["sampled"] == len(output["true"]) == len(output["predicted"]) == MAX_PAIRS
    assert output["residual"]["rmse"] == pytest.approx(
        np.sqrt(np.mean((predicted - true) ** 2)), rel=1e-5)
    assert regression_report(predicted, true) == report


# --- names each format records ------------------------------------------------------------


def _npz(path: Path, **arrays) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_csv_keeps_its_feature_columns_names_and_class_names(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("height,kind,weight\n" + "".join(
        f"{i},{['dog', 'cat'][i % 2]},{i * 2}\n" for i in range(10)))
    parsed = parse_upload(path, "csv", ParseOptions(target="kind"))
    meta = describe_parsed(parsed)
    assert meta["feature_names"] == ["height", "weight"]
    assert meta["class_names"] == ["cat", "dog"]
    info = datasets.describe_stored({**meta, "sha256": "0" * 64})
    assert info.feature_names == ("height", "weight") and info.class_names == ("cat", "dog")


def test_an_npz_may_name_its_classes_and_features(tmp_path):
    x = np.zeros((12, 3), np.float32)
    y = np.arange(12) % 2
    parsed = parse_upload(_npz(tmp_path / "d.npz", x_train=x, y_train=y,
                               class_names=np.array(["off", "on"]),
                               feature_names=np.array(["r", "g", "b"])), "npz", ParseOptions())
    assert parsed.class_names == ["off", "on"] and parsed.feature_names == ["r", "g", "b"]


@pytest.mark.parametrize(("names", "field", "says"), [
    ({"feature_names": np.array(["r", "g"])}, "file: feature_names", "3 features"),
    ({"class_names": np.array(["off"])}, "file: class_names", "labels go up to 1"),
    ({"class_names": np.array([0, 1])}, "file: class_names", "1-D array of strings"),
])
def test_names_of_the_wrong_length_or_kind_are_refused_naming_the_field(tmp_path, names, field,
                                                                         says):
    path = _npz(tmp_path / "d.npz", x_train=np.zeros((12, 3), np.float32),
                y_train=np.arange(12) % 2, **names)
    with pytest.raises(UploadError) as raised:
        parse_upload(path, "npz", ParseOptions())
    assert raised.value.field == field and raised.value.status == 422
    assert says in raised.value.message


def test_builtins_name_their_classes_and_features():
    digits = datasets.describe("digits")
    assert digits.class_names == tuple(str(c) for c in range(10))
    assert digits.feature_names is None  # pixels
    assert datasets.describe("sine").feature_names == ("x",)
    spirals = datasets.describe("spirals", datasets.Options(classes=5))
    assert spirals.class_names == ("0", "1", "2", "3", "4")
    assert spirals.feature_names == ("x0", "x1")
    assert len(datasets.describe("zones").class_names) == datasets.ZONE_LABELS


def test_a_row_stored_before_names_were_kept_reads_as_none():
    old = {"sha256": "0" * 64, "task": "regression", "input_shape": [2], "target_shape": [1],
           "num_classes": None, "class_names": None, "splits": {"train": 10}}
    info = datasets.describe_stored(old)
    assert info.feature_names is None and info.class_names is None
    labelled = datasets.describe_stored(old | {"task": "classification", "num_classes": 3,
                                               "target_shape": []})
    assert labelled.class_names == ("0", "1", "2")  # integer labels name themselves

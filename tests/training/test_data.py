"""Data loading: formats, label spellings, clear errors, skipping, splitting, the official archive."""

import io
import tarfile

import numpy as np
import pandas as pd
import pytest

from training.data import DataError, load_labelled, load_unlabelled, stratified_sample, train_validation_split
from registry.files import file_sha256
from training.fetch import convert, main as fetch_main


def write(tmp_path, name, frame):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["r.csv", "r.csv.gz", "r.parquet", "r.jsonl"])
def test_reads_every_table_format_and_label_spelling(tmp_path, name):
    frame = pd.DataFrame(
        {
            "review": ["good", "bad", "fine", "awful", "ok", "meh"],
            "sentiment": ["pos", "neg", "Positive", "NEGATIVE", "1", "0"],
        }
    )
    data = load_labelled(write(tmp_path, name, frame), text_column="review", label_column="sentiment")
    assert data.texts == frame["review"].tolist()
    assert data.labels.tolist() == [1, 0, 1, 0, 1, 0]


def test_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path, "r.csv", pd.DataFrame({"text": ["a"], "y": [1]}))
    with pytest.raises(DataError, match=r"r\.csv: no column 'label'; columns are \['text', 'y'\]"):
        load_labelled(path)


def test_bad_rows_are_reported_with_row_numbers_or_skipped_and_counted(tmp_path):
    frame = pd.DataFrame({"text": ["good", "", "  ", "bad", "ok"], "label": [1, 0, 1, "maybe", 0]})
    path = write(tmp_path, "r.csv", frame)
    with pytest.raises(
        DataError, match=r"column 'text' has empty or non-text values in data rows 2, 3 \(2 rows\)"
    ):
        load_labelled(path)
    frame.loc[1:2, "text"] = "fine"
    write(tmp_path, "r.csv", frame)
    with pytest.raises(
        DataError, match=r"column 'label' has unknown label values in data rows 4 \(1 rows\); e\.g\. 'maybe'"
    ):
        load_labelled(path)
    frame.loc[1:2, "text"] = ""
    write(tmp_path, "r.csv", frame)
    data = load_labelled(path, skip_bad_rows=True)
    assert data.texts == ["good", "ok"] and data.skipped == {"empty or non-text": 2, "unknown label": 1}


def test_star_ratings_are_read_when_present_and_follow_the_rows(tmp_path):
    frame = pd.DataFrame(
        {"text": ["good", "", "bad", "ok"], "label": [1, 0, 0, 1], "rating": ["10", "1", "2", "seven"]}
    )
    data = load_labelled(write(tmp_path, "r.csv", frame), skip_bad_rows=True)
    assert data.texts == ["good", "bad", "ok"]
    np.testing.assert_array_equal(data.ratings, [10.0, 2.0, np.nan])  # an unreadable rating is unknown
    np.testing.assert_array_equal(data.subset(np.array([2, 0])).ratings, [np.nan, 10.0])
    plain = load_labelled(write(tmp_path, "p.csv", frame.drop(columns="rating").iloc[[0, 2]]))
    assert plain.ratings is None and np.isnan(plain.ratings_or_unknown()).all()


def test_unreadable_and_unknown_files_fail_clearly(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read"):
        load_labelled(tmp_path / "broken.parquet")
    with pytest.raises(DataError, match="no such file"):
        load_labelled(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(DataError, match="unknown format"):
        load_labelled(tmp_path / "x.xlsx")


def test_split_is_stratified_disjoint_and_reproducible():
    labels = np.array([0] * 70 + [1] * 30)
    train, val = train_validation_split(labels, 0.2, seed=1)
    assert len(val) == 20 and labels[val].sum() == 6
    assert set(train).isdisjoint(val) and len(train) + len(val) == 100
    assert np.array_equal(val, train_validation_split(labels, 0.2, seed=1)[1])
    assert not np.array_equal(val, train_validation_split(labels, 0.2, seed=2)[1])
    assert len(stratified_sample(labels, 10, 0)) == 10


def make_aclimdb_archive(path):
    """Build a miniature aclImdb_v1.tar.gz with the official layout."""
    files = {
        "aclImdb/train/pos/0_9.txt": "Loved it.<br />Great.",
        "aclImdb/train/neg/1_2.txt": "Hated it.",
        "aclImdb/train/unsup/2_0.txt": "Some film.",
        "aclImdb/test/pos/3_10.txt": "Wonderful!",
        "aclImdb/test/neg/4_1.txt": "Terrible.",
        "aclImdb/README": "not a review",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_official_archive_is_read_without_mixing_splits(tmp_path):
    archive = make_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz")
    train = load_labelled(archive)
    assert sorted(train.texts) == ["Hated it.", "Loved it.<br />Great."]
    test = load_labelled(archive, aclimdb_split="test")
    assert sorted(zip(test.texts, test.labels.tolist())) == [("Terrible.", 0), ("Wonderful!", 1)]


def test_fetch_converts_a_local_archive_and_verifies_downloads(tmp_path):
    archive = make_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz")
    counts = convert(archive, tmp_path / "out")
    assert counts == {"train.csv.gz": 2, "train_unsup.csv.gz": 1, "test.csv.gz": 2}
    assert load_unlabelled(tmp_path / "out" / "train_unsup.csv.gz") == ["Some film."]
    assert load_labelled(tmp_path / "out" / "test.csv.gz").labels.sum() == 1
    # A "download" (file:// URL, no network) with a wrong checksum is discarded.
    url = archive.as_uri()
    assert fetch_main(["--dest", str(tmp_path / "dl"), "--url", url, "--sha256", "0" * 64]) == 2
    assert not (tmp_path / "dl" / "aclImdb_v1.tar.gz").exists()
    assert fetch_main(["--dest", str(tmp_path / "dl"), "--url", url, "--sha256", file_sha256(archive)]) == 0
    assert (tmp_path / "dl" / "train.csv.gz").exists()


def test_fetch_checks_a_local_archive_only_when_a_checksum_is_given(tmp_path):
    archive = make_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz")
    assert fetch_main(["--dest", str(tmp_path / "a"), "--source", str(archive)]) == 0
    assert fetch_main(["--dest", str(tmp_path / "b"), "--source", str(archive), "--sha256", "0" * 64]) == 2
    assert not (tmp_path / "b" / "train.csv.gz").exists()


def test_split_keeps_the_rows_every_existing_model_was_trained_on():
    """The seed → rows mapping is part of a model's lineage: a refactor must not change it."""
    labels = np.array([0] * 70 + [1] * 30)
    _, val = train_validation_split(labels, 0.2, seed=1337)
    assert val.tolist() == [14, 18, 19, 21, 23, 24, 27, 30, 37, 42, 47, 51, 52, 67, 71, 72, 83, 86, 87, 88]
    assert stratified_sample(labels, 10, 1337).tolist() == [12, 27, 34, 36, 47, 57, 63, 74, 75, 80]

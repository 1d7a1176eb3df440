"""Every supported input: JSON (list / dict of list), JSONL, CSV, Parquet, save_to_disk, Hub id."""

import json

import pytest

from dtmerge.config import DataConfig
from dtmerge.data import load_records, read_jsonl, write_jsonl
from dtmerge.errors import DataError

ROWS = [{"instruction": f"q{i}", "input": "", "output": f"a{i}", "source": "s"} for i in range(3)]


def test_json_list_and_dict_with_a_list(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    (tmp_path / "b.json").write_text(json.dumps({"version": 1, "data": ROWS}))
    assert load_records(DataConfig(path=str(tmp_path / "a.json"))) == ROWS
    assert load_records(DataConfig(path=str(tmp_path / "b.json"))) == ROWS
    (tmp_path / "c.json").write_text(json.dumps({"train": ROWS[:2], "test": ROWS[2:]}))
    assert load_records(DataConfig(path=str(tmp_path / "c.json"), split="test")) == ROWS[2:]
    with pytest.raises(DataError, match="data.split='dev'"):
        load_records(DataConfig(path=str(tmp_path / "c.json"), split="dev"))


def test_jsonl_roundtrip_and_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, ROWS)
    path.write_text(path.read_text() + "\n\n")
    assert read_jsonl(path) == ROWS
    assert load_records(DataConfig(path=str(path))) == ROWS


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in ROWS]
    lines.insert(2, '{"instruction": "oops", ')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed"):
        load_records(DataConfig(path=str(path)))


def test_csv_keeps_empty_cells_as_text(tmp_path):
    import pandas as pd

    path = tmp_path / "d.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    assert load_records(DataConfig(path=str(path))) == ROWS


def test_parquet_keeps_nested_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "source": "x"}]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert load_records(DataConfig(path=str(path))) == rows


def test_save_to_disk_dataset_and_datasetdict_split(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert load_records(DataConfig(path=str(tmp_path / "ds"))) == ROWS
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:2]),
                               "test": datasets.Dataset.from_list(ROWS[2:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert load_records(DataConfig(path=str(tmp_path / "dd"), split="test")) == ROWS[2:]
    with pytest.raises(DataError, match="no split 'dev'.*train"):
        load_records(DataConfig(path=str(tmp_path / "dd"), split="dev"))


def test_missing_local_file_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not found"):
        load_records(DataConfig(path=str(tmp_path / "nope.jsonl")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="Hub dataset"):
        load_records(DataConfig(path="no-such-org/no-such-dataset"))


def test_jsonl_records_are_parsed_when_used_with_line_numbers_in_errors(tmp_path):
    from dtmerge.data.jsonl import JsonlRecords, split_lines_by_label

    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}')  # blank line, no final newline
    records = JsonlRecords(path)
    assert len(records) == 3 and list(records) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert records[2] == {"a": 3} and records[0:2] == [{"a": 1}, {"a": 2}]
    records.write_subset([2, 0], tmp_path / "sub.jsonl")
    assert (tmp_path / "sub.jsonl").read_text() == '{"a": 3}\n{"a": 1}\n'
    split_lines_by_label(records, [1, 0, 1], [tmp_path / "p0.jsonl", tmp_path / "p1.jsonl"])
    assert (tmp_path / "p1.jsonl").read_text() == '{"a": 1}\n{"a": 3}\n'
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(DataError, match=r"d.jsonl:3: malformed JSON line"):
        list(JsonlRecords(path))

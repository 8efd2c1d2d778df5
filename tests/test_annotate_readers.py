"""Shards, chunks and the streaming reader: every document once, problems with file:line."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spacy_msnr.annotate.readers import find_shards, plan_chunks, read_chunk


def read_shard(shard, chunk_size):
    return [row for chunk in plan_chunks(shard, chunk_size) for row in read_chunk(chunk)]


@pytest.fixture
def abstracts(data_dir):
    with (data_dir / "pubmed" / "abstracts.jsonl").open(encoding="utf8") as f:
        return [json.loads(line) for _, line in zip(range(25), f)]


def test_jsonl_chunks_read_every_line_once_with_its_number(tmp_path, abstracts):
    path = tmp_path / "part.jsonl"
    lines = [json.dumps(r) for r in abstracts[:10]]
    lines[3] = '{"id": "broken", "text": "no closing brace"'
    lines[5] = '["a list"]'
    lines[7] = '{"id": "n", "text": 5}'
    lines.insert(8, "")
    path.write_text("\n".join(lines) + "\n{\"text\": \"no id\"}\n", encoding="utf8")
    (shard,) = find_shards([str(path)])
    for chunk_size in (1, 3, 1000):
        rows = read_shard(shard, chunk_size)
        docs = [r for r in rows if r["kind"] == "doc"]
        errors = [(r["line"], r["message"]) for r in rows if r["kind"] == "error"]
        ends = [r for r in rows if r["kind"] == "end"]
        assert [d["id"] for d in docs] == [abstracts[i]["id"] for i in (0, 1, 2, 4, 6, 8, 9)] + ["part.jsonl:12"]
        assert [d["line"] for d in docs] == [1, 2, 3, 5, 7, 10, 11, 12]
        assert docs[0]["text"] == abstracts[0]["text"]
        assert [line for line, _ in errors] == [4, 6, 8]
        assert "malformed JSON" in errors[0][1] and "expected a JSON object" in errors[1][1] and "'text' is int" in errors[2][1]
        # a row with an id but no usable text keeps its id (a review queue points back to it); a row with none has none
        assert [r["id"] for r in rows if r["kind"] == "error"] == ["", "", "n"]
        assert all(e["file"] == str(path.resolve()) for e in rows if e["kind"] == "error")
        assert sum(e["count"] for e in ends) == len(docs) + len(errors)
        assert len(ends) == len(plan_chunks(shard, chunk_size))


def test_not_utf8_line_is_an_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "caf\xe9"}\n')
    rows = read_shard(find_shards([str(path)])[0], 10)
    assert [(r["kind"], r["line"]) for r in rows[:2]] == [("doc", 1), ("error", 2)]
    assert "not UTF-8" in rows[1]["message"]


def test_parquet_rows_numbered_across_row_groups(tmp_path, abstracts):
    path = tmp_path / "part.parquet"
    table = pa.table({"id": [r["id"] for r in abstracts[:7]], "text": [r["text"] for r in abstracts[:6]] + [None]})
    pq.write_table(table, path, row_group_size=3)
    (shard,) = find_shards([str(path)])
    assert len(plan_chunks(shard)) == 3
    rows = read_shard(shard, 1000)
    assert [r["id"] for r in rows if r["kind"] == "doc"] == [r["id"] for r in abstracts[:6]]
    assert [(r["line"], r["message"], r["id"]) for r in rows if r["kind"] == "error"] == [(7, "no 'text' field", abstracts[6]["id"])]


def test_txt_folders_are_grouped_into_shards_with_relative_ids(tmp_path):
    root = tmp_path / "notes"
    (root / "b").mkdir(parents=True)
    for name in ("a1.txt", "a2.txt", "b/c.txt"):
        (root / name).write_text(f"note {name}", encoding="utf8")
    (root / "b" / "latin1.txt").write_bytes(b"line one\nna\xefve")
    shards = find_shards([str(root)], txt_files_per_shard=3)
    assert [s.name for s in shards] == ["notes-txt-00000", "notes-txt-00001"]
    rows = [r for s in shards for r in read_shard(s, 2)]
    assert [(r["id"], r["text"]) for r in rows if r["kind"] == "doc"] == [("a1.txt", "note a1.txt"), ("a2.txt", "note a2.txt"), ("b/c.txt", "note b/c.txt")]
    assert [(r["file"].endswith("latin1.txt"), r["line"]) for r in rows if r["kind"] == "error"] == [(True, 2)]


def test_globs_folders_and_name_clashes(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "part.jsonl").write_text('{"text": "a"}\n', encoding="utf8")
    (tmp_path / "errors.jsonl").write_text('{"text": "a"}\n', encoding="utf8")
    shards = find_shards([str(tmp_path / "*" / "*.jsonl"), str(tmp_path / "x"), str(tmp_path / "errors.jsonl")])
    names = [s.name for s in shards]
    assert len(shards) == 3 and len(set(names)) == 3  # x/part.jsonl is listed once
    assert all(n.startswith("part-") for n in names[:2]) and names[2].startswith("errors-")
    assert find_shards([str(tmp_path / "*" / "*.jsonl")])[0].name == names[0]  # stable across runs
    with pytest.raises(FileNotFoundError, match="No input matches"):
        find_shards([str(tmp_path / "*.parquet")])
    with pytest.raises(ValueError, match="unsupported input"):
        find_shards([str(tmp_path / "x" / "part.jsonl"), __file__])

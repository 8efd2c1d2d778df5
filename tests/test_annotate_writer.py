"""The output folder: atomic per-shard commits, done markers, errors.jsonl and manifest.json."""
import json

import pyarrow.parquet as pq
import pytest
import spacy

from spacy_msnr.annotate.readers import Shard, find_shards, make_row, plan_chunks
from spacy_msnr.annotate.records import passthrough
from spacy_msnr.annotate.writer import OutputFolder, ShardMismatchError


def out_row(shard, doc_id, entities=(), doc=b""):
    row = passthrough(make_row("doc", shard, id=doc_id))
    row.update(length=10, entities=json.dumps(list(entities)), doc=doc)
    return row


@pytest.fixture
def shards(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text('{"text": "x"}\n{"text": "y"}\n', encoding="utf8")
    return find_shards([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])


ENT = {"start_char": 0, "end_char": 4, "label": "DISEASE", "text": "gout", "score": None}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_shards_commit_when_complete_and_are_then_done(tmp_path, shards, fmt):
    folder = OutputFolder(tmp_path / "out", fmt, pipeline="en_p-1")
    chunks = [c for s in shards for c in plan_chunks(s, 1)]  # two chunks a shard
    rows = [
        out_row("a", "a1", [ENT]), make_row("end", "a", count=1), out_row("b", "b1"),
        passthrough(make_row("error", "a", file="a.jsonl", line=2, message="bad")), make_row("end", "a", count=1),
    ]
    with pytest.raises(RuntimeError, match=r"before shards \['b'\] were complete"):
        folder.consume(rows, shards, chunks)
    assert folder.is_done(shards[0]) and not folder.is_done(shards[1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_shards", f"a.{fmt}"]  # b's temporary file is gone
    if fmt == "parquet":
        records = pq.read_table(tmp_path / "out" / "a.parquet").to_pylist()
    else:
        records = [json.loads(line) for line in (tmp_path / "out" / "a.jsonl").open(encoding="utf8")]
    assert records == [{"id": "a1", "length": 10, "entities": [ENT]}]
    manifest = folder.finish(shards, {"pipeline": "en_p-1"})
    assert (manifest["docs"], manifest["entities"], manifest["errors"], manifest["unfinished"]) == (1, 1, 1, ["b"])
    assert [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open()] == [{"id": None, "file": "a.jsonl", "line": 2, "error": "bad"}]


def test_row_counts_must_match(tmp_path, shards):
    folder = OutputFolder(tmp_path / "out")
    with pytest.raises(RuntimeError, match="1 rows arrived, its chunks read 2"):
        folder.consume([out_row("a", "a1"), make_row("end", "a", count=2)], shards[:1], plan_chunks(shards[0]))
    assert not folder.is_done(shards[0]) and not list((tmp_path / "out").glob("a.*"))


def test_finished_shards_from_another_run_setup_are_refused_or_cleared(tmp_path, shards):
    folder = OutputFolder(tmp_path / "out", pipeline="en_p-1")
    folder.consume([out_row("a", "a1"), make_row("end", "a", count=1)], shards[:1], plan_chunks(shards[0]))
    with pytest.raises(ShardMismatchError, match="pipeline 'en_p-1', this run has 'en_p-2'"):
        OutputFolder(tmp_path / "out", pipeline="en_p-2").is_done(shards[0])
    moved = Shard("a", "jsonl", str(tmp_path / "elsewhere.jsonl"))
    with pytest.raises(ShardMismatchError, match="source"):
        folder.is_done(moved)
    (tmp_path / "out" / "stale.parquet.partial").write_bytes(b"half")
    folder.remove_partials()
    folder.clear(shards)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["_shards"]


def test_docbin_is_written_beside_the_records(tmp_path, shards):
    nlp = spacy.blank("en")
    doc = nlp("gout and lupus")
    folder = OutputFolder(tmp_path / "out", docbin=True)
    folder.consume([out_row("a", "a1", doc=doc.to_bytes()), make_row("end", "a", count=1)], shards[:1], plan_chunks(shards[0]))
    assert folder.is_done(shards[0])
    (back,) = spacy.tokens.DocBin().from_disk(tmp_path / "out" / "a.spacy").get_docs(nlp.vocab)
    assert back.text == "gout and lupus"
    without = OutputFolder(tmp_path / "plain")
    without.consume([out_row("a", "a1"), make_row("end", "a", count=1)], shards[:1], plan_chunks(shards[0]))
    assert without.is_done(shards[0]) and not OutputFolder(tmp_path / "plain", docbin=True).is_done(shards[0])  # redone for its DocBin


def test_errors_jsonl_keeps_the_id_of_a_row_without_text(tmp_path):
    """`annotate` end to end on JSON lines: the row with an id and no text is listed with that id."""
    import json

    import spacy

    from spacy_msnr.annotate.job import annotate

    nlp_dir = tmp_path / "blank"
    spacy.blank("en").to_disk(nlp_dir)
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "Fine."}\n{"id": "b7", "title": "no text here"}\n{"text": 3}\n', encoding="utf8")
    annotate(str(nlp_dir), [str(source)], tmp_path / "out", format="jsonl", progress=False)
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open(encoding="utf8")]
    assert [(e["id"], e["line"], e["error"]) for e in errors] == [("b7", 2, "no 'text' field"), (None, 3, "'text' is int, expected a string")]

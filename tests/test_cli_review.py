"""`review-export` and `review-import` on a small `annotate` output: the least confident documents
go out first, the reviewed ones come back as gold Docs, once."""
import json
import shutil

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import DocBin, SpanGroup
from typer.testing import CliRunner

from spacy_msnr.annotate import annotate
from spacy_msnr.cli import app

#: The score the stand-in pipeline gives each entity text.
SCORES = {"Ann Lee": 0.97, "Bob": 0.4, "Paris": 0.92, "Köln": 0.7}
TEXTS = {
    "t1": "Ann Lee flew to Paris.",  # min 0.92
    "t2": "Bob stayed in Köln.",  # min 0.4
    "t3": "Nothing happened.",  # no entity: 0.5
    "t4": "Ann Lee met Bob.",  # min 0.4, ties with t2: id order
}


@Language.component("test_review_scores")
def score_entities(doc):
    """Stand-in for a scoring NER: its entities with a score each, as fewshot_ner writes them."""
    doc.spans["scored"] = SpanGroup(doc, spans=list(doc.ents), attrs={"scores": [SCORES[e.text] for e in doc.ents]})
    return doc


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PER", "pattern": p} for p in ("Ann Lee", "Bob")] + [{"label": "LOC", "pattern": p} for p in ("Paris", "Köln")])
    nlp.add_pipe("test_review_scores")
    nlp.to_disk(root / "pipeline")
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in TEXTS.items()), encoding="utf8")
    annotate(str(root / "pipeline"), [str(source)], root / "out", format="parquet", progress=False)
    return root


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_export_label_studio_from_an_annotate_folder(annotated, tmp_path):
    code, out = run("review-export", annotated / "out", tmp_path / "tasks.json", "--limit", 3, "--threshold", 0.9, "--labels", "ORG")
    assert code == 0, out
    assert "3 of 4 documents written as tasks (least_confident), entities auto-accepted: 1" in out
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf8"))
    assert [t["data"]["doc_id"] for t in tasks] == ["t2", "t4", "t3"]
    assert [t["predictions"][0]["score"] for t in tasks] == [0.4, 0.4, 0.5]
    assert tasks[1]["data"]["text"] == TEXTS["t4"] and tasks[1]["meta"]["auto_accepted"] == ["e0"]  # Ann Lee, 0.97
    assert [r["value"]["text"] for r in tasks[1]["predictions"][0]["result"]] == ["Ann Lee", "Bob"]
    assert tasks[0]["predictions"][0]["model_version"].startswith("en_pipeline-")
    config = (tmp_path / "tasks.labelling.xml").read_text(encoding="utf8")
    assert all(f'<Label value="{x}"/>' in config for x in ("LOC", "ORG", "PER"))


def test_export_prodigy_with_other_strategies(annotated, tmp_path):
    code, out = run("review-export", annotated / "out", tmp_path / "q.jsonl", "--format", "prodigy", "--strategy", "entropy", "--limit", 0)
    assert code == 0, out
    lines = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text(encoding="utf8").splitlines()]
    # entropies (bits): t4 H(.97)+H(.4) = 0.194+0.971, t2 H(.4)+H(.7) = 0.971+0.881, t3 1.0, t1 H(.97)+H(.92) = 0.194+0.402
    assert [x["meta"]["doc_id"] for x in lines] == ["t2", "t4", "t3", "t1"]
    assert lines[3]["meta"]["auto_accepted"] == [True, True] and lines[3]["meta"]["scores"] == [0.97, 0.92]
    code, out = run("review-export", annotated / "out", tmp_path / "r.jsonl", "-f", "prodigy", "-s", "random", "--seed", 1, "-n", 0)
    assert code == 0 and sorted(json.loads(x)["meta"]["doc_id"] for x in (tmp_path / "r.jsonl").read_text().splitlines()) == sorted(TEXTS)


def test_export_a_records_jsonl(tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text(
        json.dumps({"id": "a", "text": "Ann is here.", "entities": [{"start_char": 0, "end_char": 3, "label": "PER", "score": 0.8}]}) + "\n"
        + json.dumps({"id": "b", "text": "Bo is here.", "entities": [{"start_char": 0, "end_char": 2, "label": "PER", "score": 0.45}]}) + "\n",
        encoding="utf8",
    )
    code, out = run("review-export", records, tmp_path / "m.json", "--strategy", "margin")
    assert code == 0, out
    assert [t["data"]["doc_id"] for t in json.loads((tmp_path / "m.json").read_text())] == ["b", "a"]
    records.write_text('{"id": "a", "text": "Ann", "entities": [{"start_char": 0, "end_char": 9, "label": "PER"}]}\n')
    code, out = run("review-export", records, tmp_path / "m.json")
    assert code == 1 and f"{records}: line 1: entity [0, 9) is outside the text" in out


def test_import_reviewed_tasks_once(annotated, tmp_path):
    run("review-export", annotated / "out", tmp_path / "tasks.json", "--limit", 0)
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf8"))
    for task in tasks[:3]:  # the reviewer did three of four
        task["annotations"] = [{"result": task["predictions"][0]["result"], "was_cancelled": False}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf8")
    code, out = run("review-import", export, tmp_path / "gold.spacy", "--labels", "PER,LOC")
    assert code == 0, out
    assert "3 of 4 tasks imported, 0 already present, skipped: 1 no annotation" in out and "skipped task 4 (no annotation)" in out
    docs = list(DocBin().from_bytes((tmp_path / "gold.spacy").read_bytes()).get_docs(spacy.blank("en").vocab))
    assert [[(e.text, e.label_) for e in d.ents] for d in docs] == [[("Bob", "PER"), ("Köln", "LOC")], [("Ann Lee", "PER"), ("Bob", "PER")], []]
    code, out = run("review-import", export, tmp_path / "gold.spacy")
    assert code == 0 and "0 of 4 tasks imported, 3 already present" in out and "(3 docs)" in out
    code, out = run("review-import", export, tmp_path / "other.spacy", "--labels", "PER")
    assert code == 1 and f"{export}: task 1: span [14, 18) has label 'LOC', not one of ['PER']" in out
    assert not (tmp_path / "other.spacy").exists()


def test_a_moved_source_is_a_user_error(annotated, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(annotated / "out", copy)
    marker = next((copy / "_shards").glob("*.json"))
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "source": str(tmp_path / "gone.jsonl")}))
    code, out = run("review-export", copy, tmp_path / "t.json")
    assert code == 1 and "gone.jsonl: the source of shard 'docs' is gone" in out

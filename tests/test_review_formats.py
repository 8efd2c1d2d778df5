"""Review tasks go out to Label Studio / Prodigy and come back as gold Docs: every offset and label
kept, a reviewer's edits kept, each task imported once, an interrupted import harmless, bad input named."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_msnr.review.formats import ReviewFormatError, import_review, labelling_config, write_labelling_config, write_tasks


def record(doc_id, text, ents):
    """A record with entities given as (surface, label, score); offsets found in the text."""
    out = []
    for surface, label, score in ents:
        start = text.index(surface)
        out.append({"start_char": start, "end_char": start + len(surface), "label": label, "text": surface, "score": score})
    return {"id": doc_id, "text": text, "entities": out}


RECORDS = [
    record("r1", "Angela Merkel besuchte São Paulo im Mai.", [("Angela Merkel", "PER", 0.95), ("São Paulo", "LOC", 0.6)]),
    record("r2", "Die Zürcher Rakete AG 🚀 wuchs in Köln.", [("Zürcher Rakete AG", "ORG", None), ("Köln", "LOC", 0.91)]),
    record("r3", "Nothing to see here.", []),
]


def gold(path):
    nlp = spacy.blank("en")
    return list(DocBin(store_user_data=True).from_bytes(Path(path).read_bytes()).get_docs(nlp.vocab))


def ents_of(doc):
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def expected(rec):
    return [(e["start_char"], e["end_char"], e["label"]) for e in rec["entities"]]


def studio_export(tasks_path, edit=None):
    """What Label Studio exports after a reviewer accepted (or, with `edit`, changed) each prediction."""
    tasks = json.loads(Path(tasks_path).read_text(encoding="utf8"))
    for i, task in enumerate(tasks):
        result = [dict(r) for r in task["predictions"][0]["result"]]
        task["id"] = 100 + i  # Label Studio numbers tasks itself
        task["annotations"] = [{"id": 1, "result": edit(task, result) if edit else result, "was_cancelled": False}]
    out = Path(tasks_path).with_name("studio_export.json")
    out.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf8")
    return out


def prodigy_export(tasks_path, answers=None):
    lines = [json.loads(x) for x in Path(tasks_path).read_text(encoding="utf8").splitlines()]
    for i, task in enumerate(lines):
        task["answer"] = answers[i] if answers else "accept"
    out = Path(tasks_path).with_name("prodigy_export.jsonl")
    out.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in lines), encoding="utf8")
    return out


def test_label_studio_tasks_have_the_documented_fields(tmp_path):
    assert write_tasks(RECORDS, tmp_path / "t.json", "label-studio", threshold=0.9, model_version="m1", from_name="ner", to_name="doc") == 3
    first = json.loads((tmp_path / "t.json").read_text(encoding="utf8"))[0]
    assert first["id"] == 1 and first["data"] == {"text": RECORDS[0]["text"], "doc_id": "r1"}
    prediction = first["predictions"][0]
    assert prediction["model_version"] == "m1" and prediction["score"] == 0.6  # the least confident entity
    merkel, paulo = prediction["result"]
    assert merkel == {
        "id": "e0", "from_name": "ner", "to_name": "doc", "type": "labels", "score": 0.95,
        "value": {"start": 0, "end": 13, "text": "Angela Merkel", "labels": ["PER"]},
        "meta": {"text": ["auto-accepted (score 0.950 >= 0.9)"]},
    }
    assert "meta" not in paulo and paulo["value"]["text"] == "São Paulo"
    assert first["meta"] == {"doc_id": "r1", "rank": 1, "auto_accepted": ["e0"]}


def test_labelling_config_matches_the_tasks(tmp_path):
    write_labelling_config(tmp_path / "c.xml", ["PER", "LOC", "A&B"], from_name="ner", to_name="doc")
    view = ET.parse(tmp_path / "c.xml").getroot()
    labels, text = view.find("Labels"), view.find("Text")
    assert labels.attrib == {"name": "ner", "toName": "doc"} and text.attrib == {"name": "doc", "value": "$text"}
    assert [x.attrib["value"] for x in labels] == ["A&B", "LOC", "PER"]
    assert labelling_config(["X"]).startswith('<View>\n  <Labels name="label" toName="text">')


def test_prodigy_tasks_have_the_documented_fields(tmp_path):
    write_tasks(RECORDS, tmp_path / "t.jsonl", "prodigy", threshold=0.9)
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text(encoding="utf8").splitlines()]
    assert lines[1] == {
        "text": RECORDS[1]["text"],
        "spans": [{"start": 4, "end": 21, "label": "ORG"}, {"start": 33, "end": 37, "label": "LOC"}],
        "meta": {"doc_id": "r2", "task_id": 2, "rank": 2, "scores": [None, 0.91], "auto_accepted": [False, True]},
    }


@pytest.mark.parametrize("format", ["label-studio", "prodigy"])
def test_round_trip_keeps_every_offset_and_label(tmp_path, format):
    tasks = tmp_path / "tasks"
    write_tasks(RECORDS, tasks, format)
    export = studio_export(tasks) if format == "label-studio" else prodigy_export(tasks)
    summary = import_review(export, tmp_path / "gold.spacy", format)
    assert (summary.tasks, summary.imported, summary.present, summary.total) == (3, 3, 0, 3)
    docs = gold(tmp_path / "gold.spacy")
    for doc, rec in zip(docs, RECORDS):
        assert doc.text == rec["text"] and ents_of(doc) == expected(rec)
        assert [e.text for e in doc.ents] == [e["text"] for e in rec["entities"]]
        assert doc.user_data["review"]["doc_id"] == rec["id"] and doc.user_data["review"]["source"] == str(export)
        assert all(t.ent_iob_ in "BIO" and t.ent_iob_ for t in doc)  # gold everywhere: outside tokens are O, not missing
    assert docs[0].user_data["review"]["task_id"] == (100 if format == "label-studio" else 1)
    assert len(docs[1].ents[0]) == 3  # a multi-token entity (Zürcher Rakete AG)


def test_a_reviewers_edits_survive_the_import(tmp_path):
    write_tasks(RECORDS, tmp_path / "t.json", "label-studio")

    def edit(task, result):
        if task["data"]["doc_id"] != "r1":
            return result
        result = [r for r in result if r["value"]["text"] != "São Paulo"]  # deleted
        result[0] = {**result[0], "value": {**result[0]["value"], "labels": ["POL"]}}  # relabelled
        result.append({"id": "new", "from_name": "label", "to_name": "text", "type": "labels", "value": {"start": 36, "end": 39, "text": "Mai", "labels": ["DATE"]}})
        return result

    import_review(studio_export(tmp_path / "t.json", edit), tmp_path / "gold.spacy", "label-studio")
    docs = gold(tmp_path / "gold.spacy")
    assert ents_of(docs[0]) == [(0, 13, "POL"), (36, 39, "DATE")]
    assert ents_of(docs[1]) == expected(RECORDS[1])


def test_latest_annotation_that_was_not_cancelled_wins_and_unannotated_tasks_are_reported(tmp_path):
    text = "Ann met Bob."
    ann = {"type": "labels", "value": {"start": 0, "end": 3, "labels": ["PER"]}}
    bob = {"type": "labels", "value": {"start": 8, "end": 11, "labels": ["PER"]}}
    tasks = [
        {"id": 1, "data": {"text": text}, "annotations": [
            {"result": [ann], "updated_at": "2024-02-01T00:00:00Z"},
            {"result": [ann, bob], "updated_at": "2024-03-01T00:00:00Z", "was_cancelled": True},
            {"result": [bob], "updated_at": "2024-02-15T00:00:00Z"},
            {"result": [ann], "updated_at": "2024-01-01T00:00:00Z"},
        ]},
        {"id": 2, "data": {"text": text}, "annotations": []},
        {"id": 3, "data": {"text": text}, "annotations": [{"result": [ann], "was_cancelled": True}]},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf8")
    summary = import_review(path, tmp_path / "gold.spacy", "label-studio")
    assert (summary.tasks, summary.imported) == (3, 1)
    assert summary.skipped.counts == {"no annotation": 1, "cancelled": 1}
    assert summary.skipped.tasks == ["task 2 (no annotation)", "task 3 (cancelled)"]
    (doc,) = gold(tmp_path / "gold.spacy")
    assert ents_of(doc) == [(8, 11, "PER")] and doc.user_data["review"]["key"] == "task:1"


def test_prodigy_reject_and_ignore_are_counted_not_imported(tmp_path):
    write_tasks(RECORDS, tmp_path / "t.jsonl", "prodigy")
    summary = import_review(prodigy_export(tmp_path / "t.jsonl", ["reject", "accept", "ignore"]), tmp_path / "gold.spacy", "prodigy")
    assert (summary.imported, summary.skipped.counts) == (1, {"reject": 1, "ignore": 1})
    assert [d.user_data["review"]["doc_id"] for d in gold(tmp_path / "gold.spacy")] == ["r2"]


def test_importing_twice_adds_nothing_and_a_new_export_adds_only_new_documents(tmp_path):
    write_tasks(RECORDS[:2], tmp_path / "t.json", "label-studio")
    export, out = studio_export(tmp_path / "t.json"), tmp_path / "gold.spacy"
    import_review(export, out, "label-studio")
    before = out.read_bytes()
    again = import_review(export, out, "label-studio")
    assert (again.imported, again.present, again.total) == (0, 2, 2) and out.read_bytes() == before
    write_tasks(RECORDS, tmp_path / "t.jsonl", "prodigy")  # a later round in another tool: r1, r2 again and r3
    later = import_review(prodigy_export(tmp_path / "t.jsonl"), out, "prodigy")
    assert (later.imported, later.present, later.total) == (1, 2, 3)
    assert [d.user_data["review"]["doc_id"] for d in gold(out)] == ["r1", "r2", "r3"]


def test_an_interrupted_import_leaves_the_previous_docbin(tmp_path, monkeypatch):
    write_tasks(RECORDS[:1], tmp_path / "a.jsonl", "prodigy")
    out = tmp_path / "gold.spacy"
    import_review(prodigy_export(tmp_path / "a.jsonl"), out, "prodigy")
    before = out.read_bytes()
    write_tasks(RECORDS, tmp_path / "b.jsonl", "prodigy")
    export = prodigy_export(tmp_path / "b.jsonl")

    def crash(self, target):
        raise OSError("disk gone")

    with monkeypatch.context() as m:
        m.setattr(Path, "replace", crash)  # the new DocBin is written, the rename never happens
        with pytest.raises(OSError, match="disk gone"):
            import_review(export, out, "prodigy")
    assert out.read_bytes() == before
    assert import_review(export, out, "prodigy").imported == 2 and len(gold(out)) == 3


def studio_task(**value):
    text = "Ann met Bob in Paris."
    region = {"id": "x", "type": "labels", "value": {"start": 0, "end": 3, "text": "Ann", "labels": ["PER"], **value}}
    return [{"id": 7, "data": {"text": text}, "annotations": [{"result": [region, {"type": "labels", "value": {"start": 15, "end": 20, "labels": ["LOC"]}}]}]}]


@pytest.mark.parametrize("tasks,problem", [
    (studio_task(labels=["ORG"]), "label 'ORG', not one of ['LOC', 'PER']"),
    (studio_task(end=17, text="Ann met Bob in Pa"), "spans [0, 17) PER and [15, 20) LOC overlap"),
    (studio_task(start=15, end=99), "span [15, 99) is outside the text (length 21)"),
    (studio_task(text="Anne"), "span [0, 3) says 'Anne' but the text there is 'Ann'"),
    (studio_task(labels=["PER", "LOC"]), "expected value.labels with one label"),
    (studio_task(start="0"), "span offsets must be integers"),
    (studio_task(end=2, text="An"), "span [0, 2) 'An' (PER) does not start and end on token boundaries; the nearest tokens cover [0, 3) 'Ann'"),
])
def test_bad_label_studio_input_names_file_and_task(tmp_path, tasks, problem):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf8")
    with pytest.raises(ReviewFormatError) as err:
        import_review(path, tmp_path / "gold.spacy", "label-studio", labels=["PER", "LOC"])
    assert str(err.value).startswith(f"{path}: task 7: ") and problem in str(err.value)
    assert not (tmp_path / "gold.spacy").exists()


@pytest.mark.parametrize("content,format,where,problem", [
    ('[{"id": 1,\n "data": }]', "label-studio", "line 2", "malformed JSON"),
    ('{"id": 1}', "label-studio", None, "expected a JSON list of tasks"),
    ('[{"id": 4, "data": {}}]', "label-studio", "task 4", "no data.text string"),
    ('{"text": "a", "answer": "accept"}\n{"text": "b", \n', "prodigy", "line 2", "malformed JSON"),
    ('{"text": "a", "answer": "maybe"}\n', "prodigy", "line 1", "answer must be accept, reject or ignore, got 'maybe'"),
    ('\n{"text": "Ann", "answer": "accept", "spans": [{"start": 0, "end": 9, "label": "PER"}]}\n', "prodigy", "line 2", "outside the text"),
    ('{"text": "Ann", "answer": "accept", "spans": [{"start": 0, "end": 2, "label": "PER"}]}\n', "prodigy", "line 1", "token boundaries"),
])
def test_bad_input_names_file_and_line(tmp_path, content, format, where, problem):
    path = tmp_path / "export.txt"
    path.write_text(content, encoding="utf8")
    with pytest.raises(ReviewFormatError) as err:
        import_review(path, tmp_path / "gold.spacy", format)
    assert str(err.value).startswith(f"{path}: {where}: " if where else f"{path}: ") and problem in str(err.value)


def test_an_output_that_is_not_a_docbin_is_named(tmp_path):
    write_tasks(RECORDS[:1], tmp_path / "t.jsonl", "prodigy")
    (tmp_path / "gold.spacy").write_text("not a docbin")
    with pytest.raises(ReviewFormatError, match="gold.spacy: not a DocBin"):
        import_review(prodigy_export(tmp_path / "t.jsonl"), tmp_path / "gold.spacy", "prodigy")

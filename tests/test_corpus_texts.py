"""Text sources for tokenizer training and pretraining."""
import json

import pytest
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_msnr.corpus.texts import iter_texts


def test_all_source_kinds(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": i, "text": f"text {i}"}) for i in range(3)), encoding="utf8")
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "b.txt").write_text("second", encoding="utf8")
    (folder / "a.txt").write_text("first", encoding="utf8")
    docbin = tmp_path / "c.spacy"
    DocBin(docs=[Doc(Vocab(), words=["Hello", "world"])]).to_disk(docbin)
    iob = tmp_path / "d.tsv"
    iob.write_text("Hello\tO\nworld\tB-X\n\nBye\tO\n", encoding="utf8")
    assert list(iter_texts(jsonl)) == ["text 0", "text 1", "text 2"]
    assert list(iter_texts(folder)) == ["first", "second"]
    assert list(iter_texts(docbin)) == ["Hello world "]
    assert list(iter_texts(iob)) == ["Hello world", "Bye"]


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "no text field"}\n', encoding="utf8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object with a string 'text'"):
        list(iter_texts(path))


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        list(iter_texts(tmp_path / "nope.jsonl"))


def test_read_docs_keeps_gold_entities_and_tokenizes_texts(tmp_path):
    from spacy_msnr.corpus.texts import read_docs

    iob = tmp_path / "train.tsv"
    iob.write_text("BRCA1\tB-Gene\nmutations\tO\n\nBye\tO\n", encoding="utf8")
    docs = read_docs(iob)
    assert [[(e.text, e.label_) for e in d.ents] for d in docs] == [[("BRCA1", "Gene")], []]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "Two words."}\n{"text": "  "}\n', encoding="utf8")
    assert [[t.text for t in d] for d in read_docs(jsonl)] == [["Two", "words", "."]]  # blank texts dropped
    jsonl.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf8")
    with pytest.raises(ValueError, match=r"texts.jsonl:2: expected a JSON object"):
        read_docs(jsonl)
    jsonl.write_text('{"text": " "}\n', encoding="utf8")
    with pytest.raises(ValueError, match="no documents with text"):
        read_docs(jsonl)

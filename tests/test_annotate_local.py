"""The local engine on real PubMed abstracts with a NER pipeline trained here.

`train_tiny_ner` and `write_corpus` are shared with the Ray and job tests (imported from here).
"""
import json
import random
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

from spacy_msnr.annotate.local import run_local
from spacy_msnr.annotate.readers import find_shards, plan_chunks
from spacy_msnr.corpus.iob import read_iob, sentences_to_doc

#: A small CNN ner (spaCy's TransitionBasedParser on a 64-wide HashEmbedCNN) that trains in seconds.
TINY_NER = {
    "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False, "hidden_width": 32,
    "maxout_pieces": 2, "use_upper": True,
    "tok2vec": {"@architectures": "spacy.HashEmbedCNN.v2", "pretrained_vectors": None, "width": 64, "depth": 2, "embed_size": 1000, "window_size": 1, "maxout_pieces": 2, "subword_features": True},
}
_TRAINED: Dict[Path, Path] = {}


def train_tiny_ner(data_dir: Path, path: Path) -> Path:
    """spaCy ner trained for 10 epochs on 150 NCBI-disease training sentences, saved at `path`
    (once per test session and data folder)."""
    if data_dir not in _TRAINED:
        fix_random_seed(0)  # the same weights whatever ran before in the session
        nlp = spacy.blank("en")
        nlp.add_pipe("ner", config={"model": TINY_NER})
        sentences = [s for s in read_iob(data_dir / "blurb" / "NCBI-disease-IOB" / "train.tsv") if any(t != "O" for t in s.tags)][:150]
        examples = [Example(nlp.make_doc(" ".join(s.words)), sentences_to_doc(nlp.vocab, [s])) for s in sentences]
        optimizer = nlp.initialize(lambda: examples)
        rng = random.Random(0)
        for _ in range(10):
            rng.shuffle(examples)
            for batch in minibatch(examples, 16):
                nlp.update(batch, sgd=optimizer)
        nlp.to_disk(path)
        _TRAINED[data_dir] = path
    return _TRAINED[data_dir]


def write_corpus(data_dir: Path, folder: Path, n_docs: int, n_shards: int, malformed: bool = True) -> List[Path]:
    """`n_docs` PubMed abstracts in `n_shards` JSONL files; with `malformed`, shard 1 gets a
    broken line at line 3 and a record without text at line 5. Past the 60 abstracts of the
    fixture slice they come round again under new ids (`<id>-1`, `<id>-2`, ...)."""
    with (data_dir / "pubmed" / "abstracts.jsonl").open(encoding="utf8") as f:
        abstracts = [line.rstrip("\n") for line in f]
    lines = []
    for i in range(n_docs):
        round_, line = i // len(abstracts), abstracts[i % len(abstracts)]
        if round_:
            record = json.loads(line)
            line = json.dumps({**record, "id": f"{record['id']}-{round_}"})
        lines.append(line)
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-n_docs // n_shards)
    paths = []
    for i in range(n_shards):
        part = lines[i * size : (i + 1) * size]
        if malformed and i == 1:
            part[2:2] = ['{"id": "broken", "text": "Cut off']
            part[4:4] = ['{"id": "no-text", "title": "x"}']
        paths.append(folder / f"part-{i}.jsonl")
        paths[-1].write_text("\n".join(part) + "\n", encoding="utf8")
    return paths


def valid_records(paths: List[Path]) -> Dict[str, str]:
    """id -> text of the well-formed records of `write_corpus` files, in order."""
    out = {}
    for path in paths:
        for line in path.open(encoding="utf8"):
            if "broken" not in line and "no-text" not in line:
                record = json.loads(line)
                out[record["id"]] = record["text"]
    return out


@pytest.fixture(scope="module")
def tiny_ner(data_dir, tmp_path_factory) -> Path:
    return train_tiny_ner(data_dir, tmp_path_factory.mktemp("tiny_ner"))


def test_local_engine_annotates_abstracts_in_order(tiny_ner, data_dir, tmp_path):
    paths = write_corpus(data_dir, tmp_path, 120, 3)
    chunks = [c for s in find_shards([str(p) for p in paths]) for c in plan_chunks(s, 25)]
    rows = list(run_local(str(tiny_ner), chunks, batch_size=16))
    docs = [r for r in rows if r["kind"] == "doc"]
    texts = valid_records(paths)
    assert [d["id"] for d in docs] == list(texts) and len(texts) == 120
    entities = [(d["id"], e) for d in docs for e in json.loads(d["entities"])]
    assert len(entities) > 50  # the trained pipeline finds diseases
    assert all(texts[i][e["start_char"] : e["end_char"]] == e["text"] for i, e in entities)
    assert [(r["line"], r["message"][:14]) for r in rows if r["kind"] == "error"] == [(3, "malformed JSON"), (5, "no 'text' fiel")]
    assert [r["shard"] for r in rows if r["kind"] == "end"] == [c.shard for c in chunks]


def test_two_processes_give_the_same_records(tiny_ner, data_dir, tmp_path):
    paths = write_corpus(data_dir, tmp_path, 40, 2, malformed=False)
    chunks = [c for s in find_shards([str(p) for p in paths]) for c in plan_chunks(s)]
    one = list(run_local(str(tiny_ner), chunks, batch_size=8, max_length=500))
    two = list(run_local(str(tiny_ner), chunks, batch_size=8, max_length=500, n_process=2))
    assert one == two and sum(len(json.loads(r["entities"])) for r in one) > 10

"""End to end on a tiny local model: spacy train -> spacy package -> spacy.load in a fresh process."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.cli.package import package
from spacy.cli.train import train
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_msnr.corpus.iob import read_iob, sentences_to_doc

ROOT = Path(__file__).resolve().parent.parent


def docbin(path: Path, sentences) -> Path:
    vocab = Vocab()
    DocBin(docs=[sentences_to_doc(vocab, [s]) for s in sentences]).to_disk(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, data_dir):
    """A transformer+ner pipeline overfit on 24 NCBI-disease sentences with entities."""
    tmp = tmp_path_factory.mktemp("smoke")
    sentences = [s for s in read_iob(data_dir / "blurb/NCBI-disease-IOB/train.tsv")[:200] if len(s.words) < 30 and "B-Disease" in s.tags][:24]
    train_path = docbin(tmp / "train.spacy", sentences)
    base = tmp / "base"
    shutil.copytree(tiny_model_dir("bert"), base)
    overrides = {
        "paths.train": str(train_path), "paths.dev": str(train_path), "paths.base_model": str(base),
        "training.max_steps": 120, "training.eval_frequency": 40, "training.optimizer.learn_rate.initial_rate": 2e-3,
        "training.optimizer.learn_rate.warmup_steps": 10, "training.batcher.size": 300, "training.logger.progress_bar": False,
    }
    train(ROOT / "configs" / "ner_trf.cfg", tmp / "training", overrides=overrides)
    texts = [" ".join(s.words) for s in sentences[:12]]
    return tmp, tmp / "training" / "model-best", texts


def char_ents(doc):
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def test_training_learns_the_training_entities(trained, data_dir):
    """The overfit pipeline predicts exactly the gold entities (spans and labels) of the
    training sentences, each of which has at least one."""
    _, model_dir, texts = trained
    nlp = spacy.load(model_dir)
    assert nlp.pipe_names == ["transformer", "ner"]
    vocab = Vocab()
    sentences = {" ".join(s.words): s for s in read_iob(data_dir / "blurb/NCBI-disease-IOB/train.tsv")[:200]}
    gold = [sentences_to_doc(vocab, [sentences[text]]) for text in texts]
    assert [doc.text.strip() for doc in gold] == texts and all(doc.ents for doc in gold)
    assert [char_ents(doc) for doc in nlp.pipe(texts)] == [char_ents(doc) for doc in gold]


def test_package_installs_and_loads_in_a_fresh_process(trained):
    tmp, model_dir, texts = trained
    (tmp / "packages").mkdir(exist_ok=True)
    package(model_dir, tmp / "packages", name="smoke_ner", version="0.0.1", create_wheel=True, create_sdist=False, force=True, silent=True)
    wheel = next((tmp / "packages").glob("**/dist/*.whl"))
    shutil.rmtree(tmp / "base")  # the package must carry the transformer's weights itself
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True)
    script = (
        "import json, sys, spacy\n"
        "from spacy import displacy\n"
        "nlp = spacy.load('en_smoke_ner')\n"
        "docs = list(nlp.pipe(json.loads(sys.argv[1])))\n"
        "html = displacy.render(docs, style='ent', page=True)\n"
        "print(json.dumps({'ents': [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs], 'html': html}))\n"
    )
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script, json.dumps(texts)], cwd=tmp, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = [[[e.start_char, e.end_char, e.label_] for e in d.ents] for d in spacy.load(model_dir).pipe(texts)]
    assert result["ents"] == expected
    first = next(d for d in result["ents"] if d)
    assert f'class="entity"' in result["html"] and "Disease" in result["html"]
    text = texts[result["ents"].index(first)]
    assert text[first[0][0]:first[0][1]] in result["html"]


def test_visualize_cli_renders_predicted_entities(trained):
    from typer.testing import CliRunner

    from spacy_msnr.cli import app

    tmp, model_dir, texts = trained
    out = tmp / "ents.html"
    result = CliRunner().invoke(app, ["visualize", str(model_dir), str(tmp / "train.spacy"), str(out), "--limit", "12"])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf8")
    n_ents = sum(len(doc.ents) for doc in spacy.load(model_dir).pipe(texts))
    assert html.count('class="entity"') == n_ents > 0

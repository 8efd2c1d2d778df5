"""Shared fixtures: the committed corpus slices in tests/fixtures and tiny locally built models."""
import json
import os
from pathlib import Path
from typing import Callable, List

import pytest

import util  # tests/util.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Small committed slices of the real corpora, laid out like the project's assets
    (blurb/, crossner/, pubmed/); tests/fixtures/README.md gives their sources and sizes.
    The same everywhere: the tests never read a corpus outside the repository."""
    return util.FIXTURES


@pytest.fixture(scope="session")
def pubmed_texts(data_dir: Path) -> List[str]:
    """The 60 PubMed abstracts of the fixture slice (about 12,000 words), enough to train a tiny tokenizer."""
    with (data_dir / "pubmed" / "abstracts.jsonl").open(encoding="utf8") as f:
        return [json.loads(line)["text"] for line in f]


@pytest.fixture(scope="session")
def tiny_tokenizer(pubmed_texts) -> Callable:
    """tiny_tokenizer(family) -> a 1000-piece tokenizer for that model family (cached)."""
    from spacy_msnr.base.tokenizer import train_tokenizer

    cache = {}

    def make(family: str = "bert"):
        if family not in cache:
            cache[family] = train_tokenizer(pubmed_texts, family, vocab_size=1000)
        return cache[family]

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer, tmp_path_factory) -> Callable:
    """tiny_model_dir(family) -> a saved 2-layer, 64-wide random model directory (cached)."""
    from spacy_msnr.base.models import build_model

    cache = {}

    def make(family: str = "bert") -> Path:
        if family not in cache:
            path = tmp_path_factory.mktemp(f"tiny-{family}")
            tok = tiny_tokenizer(family)
            model = build_model(family, tok, hidden_size=64, num_layers=2, num_heads=2, max_positions=256)
            model.save_pretrained(path, safe_serialization=True)
            tok.save_pretrained(path)
            cache[family] = path
        return cache[family]

    return make


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny Llama with a chat template in its tokenizer (the chat prompt format)."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-chat-llama") / "model"
    shutil.copytree(tiny_model_dir("llama"), path)
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.chat_template = util.CHAT_TEMPLATE
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one torch thread, and much faster on a loaded 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def precision_auto_is_fp32():
    """`precision = "auto"` resolves to fp32 in the tests, as on a CPU without native bf16, so that
    results do not depend on the machine (session-wide: module-scoped pipelines too); the bf16
    tests ask for "bf16" explicitly or patch this back."""
    import spacy_msnr.precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spacy_msnr.precision, "cpu_has_native_bf16", lambda: False)
        yield

"""`fewshot-eval`: --gpu-id reaches spaCy's GPU setup before anything is loaded; the fixed query sample."""
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_msnr.cli import app

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "fewshot.cfg"


class Stop(Exception):
    pass


def test_gpu_id_is_passed_to_setup_gpu(tmp_path, monkeypatch):
    import spacy_msnr.cli.fewshot_eval as cli

    support = tmp_path / "support.spacy"
    DocBin(docs=[spacy.blank("en")("Rome .")]).to_disk(support)
    seen = []

    def fake_setup_gpu(gpu_id):
        seen.append(gpu_id)
        raise Stop

    monkeypatch.setattr(cli, "setup_gpu", fake_setup_gpu)
    for args, want in ([["--gpu-id", "0"], 0], [[], -1]):
        result = CliRunner().invoke(app, ["fewshot-eval", str(CONFIG), str(support), *args])
        assert isinstance(result.exception, Stop), result.output
        assert seen[-1] == want


def test_query_sample_is_fixed_ordered_and_bounded():
    from spacy_msnr.cli.fewshot_eval import query_sample

    docs = list(range(100))
    a = query_sample(docs, 10, seed=3)
    assert a == query_sample(docs, 10, seed=3) and a != query_sample(docs, 10, seed=4)
    assert len(a) == 10 and a == sorted(a) and set(a) <= set(docs)
    assert query_sample(docs, None, 0) == docs and query_sample(docs, 500, 0) == docs
    with pytest.raises(ValueError, match="query-limit"):
        query_sample(docs, 0, 0)

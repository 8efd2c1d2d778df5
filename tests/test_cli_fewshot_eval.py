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


def test_summary_averages_each_type_over_the_episodes_that_held_it():
    from spacy_msnr.cli.fewshot_eval import per_type_table, summarize

    results = [
        {"f": 0.5, "labels": ["a", "b"], "per_type": {"a": {"p": 1.0, "r": 0.5, "f": 2 / 3}, "b": {"p": 0.2, "r": 0.2, "f": 0.2}}},
        {"f": 0.1, "labels": ["a", "c"], "per_type": {"a": {"p": 0.0, "r": 0.0, "f": 0.0}}},  # c never predicted nor in the query
    ]
    summary = summarize(results)
    assert summary["f_mean"] == pytest.approx(0.3) and summary["f_std"] == pytest.approx(0.28284, abs=1e-5)
    assert summary["per_type"]["a"] == pytest.approx({"p": 0.5, "r": 0.25, "f": 1 / 3, "episodes": 2})
    assert summary["per_type"]["b"] == pytest.approx({"p": 0.2, "r": 0.2, "f": 0.2, "episodes": 1})
    assert summary["per_type"]["c"] == pytest.approx({"p": 0.0, "r": 0.0, "f": 0.0, "episodes": 1})
    assert per_type_table(summary["per_type"])[1].split() == ["a", "50.00", "25.00", "33.33", "2"]

"""`fewshot-eval`: --gpu-id reaches spaCy's GPU setup before anything is loaded."""
from pathlib import Path

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

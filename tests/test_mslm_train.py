"""The training loop: config overrides, outputs, exact resume, bad input, the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from typer.testing import CliRunner

from spacy_msnr.corpus.iob import iob_to_docs
from spacy_msnr.mslm import train as train_module
from spacy_msnr.mslm.train import load_config, train

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mslm.cfg"

SMALL = {
    "training.max_steps": 6, "training.batch_size": 400, "training.eval_frequency": 3,
    "training.checkpoint_every": 3, "training.max_length": 64, "training.optimizer.learn_rate": 0.001,
}


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mslm-corpus")
    vocab = Vocab()
    path = data_dir / "blurb" / "NCBI-disease-IOB"
    DocBin(docs=iob_to_docs(path / "train.tsv", vocab)[:40]).to_disk(root / "train.spacy")
    DocBin(docs=iob_to_docs(path / "devel.tsv", vocab)[:16]).to_disk(root / "dev.spacy")
    return root


def config_for(corpus, model_dir, **extra):
    overrides = {"paths.train": str(corpus / "train.spacy"), "paths.dev": str(corpus / "dev.spacy"),
                 "paths.base_model": str(model_dir), **SMALL, **extra}
    return load_config(DEFAULT_CONFIG, overrides)


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_train_writes_a_transformers_directory_and_log(family, corpus, tiny_model_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path / "mslm"
    log = train(config_for(corpus, tiny_model_dir(family)), out, show_progress=False)
    assert log["steps"] == 6 and [h["step"] for h in log["history"]] == [3, 6] and log["final_learn_rate"] == 0.0
    assert log["train_ds_terms"] > 0 and 0 <= log["history"][-1]["dev_term_acc"] <= 1
    assert json.loads((out / "mslm_log.json").read_text())["steps"] == 6
    assert (out / "model.safetensors").exists() and not (out / "checkpoint").exists()
    assert not list(tmp_path.glob(".mslm.*"))
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).mask_token is not None
    base = AutoModelForMaskedLM.from_pretrained(tiny_model_dir(family))
    name = "embeddings.word_embeddings.weight"
    adapted = model.base_model.get_parameter(name)
    assert not torch.equal(adapted, base.base_model.get_parameter(name))
    # the directory is usable as `name` of spacy-transformers' transformer component
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(out), "tokenizer_config": {"use_fast": True},
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 48, "stride": 32}}})
    nlp.initialize()
    doc = nlp("Germline BRCA1 mutations cause familial breast cancer .")
    assert doc._.trf_data.tensors[0].shape[-1] == model.config.hidden_size
    loaded = next(node for node in nlp.get_pipe("transformer").model.walk() if node.shims).shims[0]._model
    assert torch.equal(loaded.get_parameter(name), adapted)


def test_interrupted_then_resumed_run_matches_uninterrupted(corpus, tiny_model_dir, tmp_path, monkeypatch):
    model_dir = tiny_model_dir("bert")
    full = tmp_path / "full"
    train(config_for(corpus, model_dir, **{"training.keep_checkpoint": True}), full, show_progress=False)

    original = train_module._save_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    part = tmp_path / "part"
    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(config_for(corpus, model_dir, **{"training.keep_checkpoint": True}), part, show_progress=False)
    # the interrupted output holds only a checkpoint, never a half-written model
    assert sorted(p.name for p in part.iterdir()) == ["checkpoint"]
    assert json.loads((part / "checkpoint" / "state.json").read_text())["step"] == 3
    monkeypatch.setattr(train_module, "_save_checkpoint", original)
    with pytest.raises(FileExistsError):
        train(config_for(corpus, model_dir), part, show_progress=False)
    log = train(config_for(corpus, model_dir, **{"training.keep_checkpoint": True}), part, resume=True, show_progress=False)
    assert log["steps"] == 6
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert weights(full / "checkpoint").keys() == weights(part / "checkpoint").keys()


def test_unlabeled_text_joins_the_training_text_with_lexicon_terms_and_no_tags(corpus, tiny_model_dir, tmp_path, pubmed_texts, monkeypatch):
    abstracts = tmp_path / "abstracts.jsonl"
    abstracts.write_text("\n".join(json.dumps({"text": t}) for t in pubmed_texts[:20]), encoding="utf8")
    seen = []
    original = train_module.update_micro_batch
    monkeypatch.setattr(train_module, "update_micro_batch", lambda model, seqs, *a: seen.extend(seqs) or original(model, seqs, *a))
    log = train(config_for(corpus, tiny_model_dir("bert"), **{"paths.unlabeled": str(abstracts), "model.ner_weight": 1.0}),
                tmp_path / "mslm", show_progress=False)
    assert log["unlabeled_docs"] >= 20 and log["unlabeled_ds_terms"] > 0 and log["train_ds_terms"] > 0
    labeled = train(config_for(corpus, tiny_model_dir("bert")), tmp_path / "labeled", show_progress=False)
    assert labeled["unlabeled_docs"] == 0 and labeled["train_docs"] == log["train_docs"]
    # unlabeled windows carry no tags (never "O" for their entity words); labeled ones do
    assert any((s.tags == -100).all() for s in seen) and any((s.tags >= 0).any() for s in seen)


def test_missing_unlabeled_text_is_skipped_with_a_warning(corpus, tiny_model_dir, tmp_path, capsys):
    missing = tmp_path / "no-abstracts.jsonl"
    log = train(config_for(corpus, tiny_model_dir("bert"), **{"paths.unlabeled": str(missing), "training.max_steps": 1}),
                tmp_path / "mslm", show_progress=False)
    assert log["unlabeled_docs"] == 0 and log["steps"] == 1
    assert f"paths.unlabeled {missing} not found" in " ".join(capsys.readouterr().out.split())


def test_docs_without_entities_warn_and_fall_back_to_blm(tiny_model_dir, tmp_path):
    vocab = Vocab()
    docs = [Doc(vocab, words=f"the patient number {i} was seen again today".split()) for i in range(12)]
    DocBin(docs=docs).to_disk(tmp_path / "plain.spacy")
    cfg = load_config(DEFAULT_CONFIG, {"paths.train": str(tmp_path / "plain.spacy"), "paths.base_model": str(tiny_model_dir("bert")),
                                        **SMALL, "training.max_steps": 2})
    with pytest.warns(UserWarning, match="falls back to BLM-only"):
        log = train(cfg, tmp_path / "out", show_progress=False)
    assert log["train_ds_terms"] == 0 and log["steps"] == 2


def test_empty_corpus_and_missing_paths_are_errors(tiny_model_dir, tmp_path):
    DocBin().to_disk(tmp_path / "empty.spacy")
    cfg = load_config(DEFAULT_CONFIG, {"paths.train": str(tmp_path / "empty.spacy"), "paths.base_model": str(tiny_model_dir("bert"))})
    with pytest.raises(ValueError, match="no documents"):
        train(cfg, tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match="paths.train"):
        train(load_config(DEFAULT_CONFIG, {"paths.base_model": "x"}), tmp_path / "out2", show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_takes_overrides_and_reports_bad_rates(corpus, tiny_model_dir, tmp_path):
    from spacy_msnr.cli import app

    overrides = ["--paths.train", str(corpus / "train.spacy"), "--paths.base_model", str(tiny_model_dir("bert")),
                 "--training.max_steps", "2", "--training.max_length", "64"]
    result = CliRunner().invoke(app, ["mslm", str(DEFAULT_CONFIG), str(tmp_path / "ok"), *overrides])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ok" / "mslm_log.json").read_text())["steps"] == 2
    result = CliRunner().invoke(app, ["mslm", str(DEFAULT_CONFIG), str(tmp_path / "bad"), *overrides, "--model.masker.elm_rate", "1.5"])
    assert result.exit_code == 1 and "elm_rate must be within [0, 1]" in result.output and "Traceback" not in result.output
    # the old name still runs, with its old --output option, and says what to use instead
    result = CliRunner().invoke(app, ["pretrain", str(DEFAULT_CONFIG), *overrides, "--output", str(tmp_path / "old")])
    assert result.exit_code == 0, result.output
    assert "deprecated" in result.output and "mslm CONFIG" in " ".join(result.output.split())
    assert json.loads((tmp_path / "old" / "mslm_log.json").read_text())["steps"] == 2


def test_gradient_accumulation_and_joint_tagging_head(corpus, tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("bert")
    one = train(config_for(corpus, model_dir, **{"training.max_steps": 2, "training.eval_frequency": 2}), tmp_path / "one", show_progress=False)
    two = train(config_for(corpus, model_dir, **{"training.max_steps": 2, "training.eval_frequency": 2,
                                                 "training.accumulate_gradient": 2, "model.ner_weight": 1.0}),
                tmp_path / "two", show_progress=False)
    assert one["steps"] == two["steps"] == 2
    assert 0 <= two["history"][-1]["dev_tag_acc"] <= 1 and "dev_tag_acc" not in one["history"][-1]
    # the tagging head is saved with the model: from the directory alone, the head on the
    # encoder's last hidden layer of UNMASKED dev text scores the dev accuracy the run logged
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from spacy_msnr.mslm.model import load_tagger
    from spacy_msnr.mslm.terms import GoldTerms

    assert not (tmp_path / "one" / "mslm_tagger.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="ner_weight"):
        load_tagger(tmp_path / "one")
    tagger, labels = load_tagger(tmp_path / "two")
    assert labels == ["O", "B-Disease", "I-Disease"]
    encoder = AutoModelForMaskedLM.from_pretrained(tmp_path / "two").base_model.eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "two")
    seqs = train_module.encode(train_module.read_docs(corpus / "dev.spacy"), tokenizer, GoldTerms(), 64, labels)
    right = total = 0
    with torch.no_grad():
        for seq in seqs:
            hidden = encoder(input_ids=torch.as_tensor(seq.input_ids)[None]).last_hidden_state
            gold = torch.tensor(seq.tags)
            keep = gold >= 0
            right += int((tagger(hidden)[0].argmax(-1) == gold)[keep].sum())
            total += int(keep.sum())
    assert right / total == pytest.approx(two["history"][-1]["dev_tag_acc"], abs=1e-6)


def test_accumulated_gradient_is_the_gradient_of_the_steps_whole_loss(corpus, tiny_model_dir, tmp_path, monkeypatch):
    """With accumulate_gradient = 2 the gradient the optimizer steps on (captured before
    clipping) equals the gradient of the mean of the two micro-batches' losses taken in one
    backward pass, computed here with autograd and torch's cross-entropy, not the package's."""
    import shutil

    from spacy.util import registry

    from spacy_msnr.mslm.loss import position_weights
    from spacy_msnr.mslm.masking import mask_batch
    from spacy_msnr.mslm.model import torch_module

    base = tmp_path / "base"  # without dropout, so both computations see the same network
    shutil.copytree(tiny_model_dir("bert"), base)
    settings = json.loads((base / "config.json").read_text())
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (base / "config.json").write_text(json.dumps(settings))
    cfg = config_for(corpus, base, **{"training.max_steps": 1, "training.eval_frequency": 1, "training.accumulate_gradient": 2})
    captured = []
    clip = torch.nn.utils.clip_grad_norm_

    def capture_then_clip(params, *args, **kwargs):
        params = list(params)
        captured.append([p.grad.clone() for p in params])
        return clip(params, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", capture_then_clip)
    train(cfg, tmp_path / "acc", show_progress=False)
    assert len(captured) == 1

    resolved = registry.resolve(cfg.interpolate())
    model, weighting = resolved["model"], resolved["model"].attrs["loss"].weighting
    seqs = _encoded_train(corpus, base)
    batches = train_module._epoch_batches([len(s) for s in seqs], 0, 0, 400)[:2]
    module = torch_module(model)
    masking = model.get_ref("masking")
    total = 0.0
    for index, batch_ids in enumerate(batches):
        batch = mask_batch([seqs[i] for i in batch_ids], masking.attrs["masker"], masking.attrs["replacer"],
                           np.random.default_rng([0, 0, index]))
        logits, _ = module(batch.input_ids, batch.attention_mask, batch.positions)
        alpha = position_weights(batch.kinds, weighting)[0]
        total = total + (alpha * torch.nn.functional.cross_entropy(logits, batch.labels, reduction="none")).mean() / 2
    total.backward()
    expected = [p.grad for p in module.parameters()]
    assert len(expected) == len(captured[0]) > 10
    for got, want in zip(captured[0], expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


def test_max_epochs_without_max_steps_runs_whole_epochs(corpus, tiny_model_dir, tmp_path):
    from spacy_msnr.mslm.metrics import pack

    cfg = config_for(corpus, tiny_model_dir("bert"), **{"training.max_steps": 0, "training.max_epochs": 2,
                                                         "training.eval_frequency": 1000, "training.checkpoint_every": 0})
    log = train(cfg, tmp_path / "epochs", show_progress=False)
    lengths = [len(s) for s in _encoded_train(corpus, tiny_model_dir("bert"))]
    # each epoch packs the corpus in its own seeded order (seed 0): one optimizer step a batch
    n_batches = [len(pack(lengths, np.random.default_rng([0, epoch]).permutation(len(lengths)), 400)) for epoch in (0, 1)]
    assert log["epochs"] == 2 and log["steps"] == sum(n_batches)
    # the learning rate decays to 0 at the last step of the last epoch, as with max_steps
    assert log["final_learn_rate"] == 0.0
    # the run ends with one evaluation at its last step, and the full corpus went through twice
    assert [h["step"] for h in log["history"]] == [log["steps"]]
    assert log["wordpieces"] == 2 * sum(lengths)
    with pytest.raises(ValueError, match="max_steps or training.max_epochs"):
        train(config_for(corpus, tiny_model_dir("bert"), **{"training.max_steps": 0}), tmp_path / "never", show_progress=False)


def _encoded_train(corpus, model_dir):
    from transformers import AutoTokenizer

    from spacy_msnr.mslm.terms import GoldTerms

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return train_module.encode(train_module.read_docs(corpus / "train.spacy"), tokenizer, GoldTerms(), 64)


def test_resuming_a_finished_run_takes_no_step(corpus, tiny_model_dir, tmp_path):
    cfg = config_for(corpus, tiny_model_dir("bert"), **{"training.keep_checkpoint": True})
    out = tmp_path / "done"
    first = train(cfg, out, show_progress=False)
    before = weights(out)
    again = train(cfg, out, resume=True, show_progress=False)
    assert first["steps"] == again["steps"] == 6
    assert [h["step"] for h in again["history"]] == [h["step"] for h in first["history"]] == [3, 6]
    assert again["wordpieces"] == first["wordpieces"]
    after = weights(out)
    assert all(torch.equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize("key,value,message", [
    ("training.eval_frequency", 0, r"training.eval_frequency must be an integer >= 1, got 0"),
    ("training.max_steps", -1, r"training.max_steps must be an integer >= 0, got -1"),
    ("training.batch_size", 0, r"training.batch_size must be an integer >= 1, got 0"),
    ("training.accumulate_gradient", 1.5, r"training.accumulate_gradient must be an integer >= 1, got 1.5"),
    ("training.checkpoint_every", -3, r"training.checkpoint_every must be an integer >= 0, got -3"),
    ("training.max_length", 2, r"training.max_length = 2 leaves no room for text beside the 2 special tokens"),
    ("training.keep_checkpoint", "yes", r"training.keep_checkpoint must be true or false, got 'yes'"),
    ("training.optimizer.learn_rate", 0, r"training.optimizer.learn_rate must be a positive number, got 0"),
    ("training.optimizer.beta1", 1.0, r"training.optimizer.beta1 must be within \[0, 1\), got 1.0"),
    ("training.optimizer.weight_decay", -0.1, r"training.optimizer.weight_decay must be at least 0, got -0.1"),
    ("training.optimizer.max_grad_norm", -1.0, r"training.optimizer.max_grad_norm must be at least 0"),
    ("training.optimizer.warmup_steps", -5, r"training.optimizer.warmup_steps must be an integer >= 0, got -5"),
    ("model.masker.blm_rate", -0.2, r"blm_rate must be within \[0, 1\], got -0.2"),
])
def test_bad_config_values_are_clear_errors_before_training(corpus, tiny_model_dir, tmp_path, key, value, message):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match=message):
        train(config_for(corpus, tiny_model_dir("bert"), **{key: value}), out, show_progress=False)
    assert not out.exists()


def test_adamw_lives_in_msnr_optimizers_and_is_refused_as_a_spacy_optimizer(corpus, tiny_model_dir, tmp_path):
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import registry

    from spacy_msnr.mslm.optimizer import TorchOptimizer

    assert DEFAULT_CONFIG.read_text().count('@msnr_optimizers = "spacy_msnr.AdamW.v1"') == 1
    assert isinstance(registry.msnr_optimizers.get("spacy_msnr.AdamW.v1")(), TorchOptimizer)
    # an MSLM config written with the old name still trains, with a deprecation warning
    old = config_for(corpus, tiny_model_dir("bert"), **{"training.max_steps": 1, "training.eval_frequency": 1})
    settings = old["training"]["optimizer"]
    old["training"]["optimizer"] = {"@optimizers": settings.pop("@msnr_optimizers"), **settings}
    with pytest.warns(DeprecationWarning, match="write @msnr_optimizers"):
        assert train(old, tmp_path / "old", show_progress=False)["steps"] == 1
    # in spaCy's own [training.optimizer] the name gets an error that says what to do
    nlp_config = load_config(DEFAULT_CONFIG.parent / "ner_trf.cfg", {"paths.train": "x", "paths.dev": "x"}).interpolate()
    nlp_config["training"]["optimizer"] = {"@optimizers": "spacy_msnr.AdamW.v1", "learn_rate": 0.001}
    with pytest.raises(ValueError, match="not a thinc Optimizer and cannot be spaCy's \\[training.optimizer\\]"):
        registry.resolve(nlp_config["training"], schema=ConfigSchemaTraining)


def test_bf16_adaptation_tracks_fp32_and_saves_fp32(corpus, tiny_model_dir, tmp_path):
    """The same run in fp32 and in bf16 autocast: the loss falls in both and the two curves stay
    close (same masks, same batches); the adapted weights are saved in fp32 either way."""
    model_dir = tiny_model_dir("bert")
    settings = {"training.max_steps": 12, "training.eval_frequency": 4, "training.optimizer.learn_rate": 0.003}
    logs = {p: train(config_for(corpus, model_dir, **settings, **{"model.precision": p}), tmp_path / p, show_progress=False)
            for p in ("fp32", "bf16")}
    assert logs["fp32"]["autocast"] == "float32" and logs["bf16"]["autocast"] == "bfloat16"
    curves = {p: [h["loss"] for h in log["history"]] for p, log in logs.items()}
    for curve in curves.values():
        assert len(curve) == 3 and curve[-1] < curve[0]
    assert all(abs(a - b) < 0.05 * a for a, b in zip(curves["fp32"], curves["bf16"]))
    assert {v.dtype for v in weights(tmp_path / "bf16").values()} == {torch.float32}

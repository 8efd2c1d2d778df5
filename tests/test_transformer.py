"""spacy_msnr.TransformerModel.v1: spacy-transformers' model computing in bf16 where asked, with
fp32 outputs, fp32 weights on disk, and training that still learns."""
import io

import numpy
import pytest
import spacy
import torch
from spacy.training import Example

import spacy_msnr.precision as precision
from spacy_msnr.transformer import precision_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["Germline BRCA1 mutations cause familial breast cancer .", "Ataxia telangiectasia is a rare disease ."]
TRAIN = [("Germline BRCA1 mutations cause familial breast cancer .", [(39, 52, "Disease")]),
         ("Ataxia telangiectasia is a rare disease .", [(0, 21, "Disease")]),
         ("The patients had no history of colorectal cancer .", [(31, 48, "Disease")]),
         ("Mutations in APC were found in two families .", [])]


def pipeline(base, precision_name: str, ner: bool = False):
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy_msnr.TransformerModel.v1", "name": str(base), "precision": precision_name,
        "tokenizer_config": {"use_fast": True},
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 48, "stride": 32}}})
    if ner:
        nlp.add_pipe("ner", config={"model": {
            "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "hidden_width": 32,
            "maxout_pieces": 2, "use_upper": False,
            "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                        "pooling": {"@layers": "reduce_mean.v1"}}}})
    return nlp


def hf_module(nlp):
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


def linear_dtypes(nlp, texts):
    """The dtypes the HF model's first linear layer produced while the pipeline ran over `texts`."""
    seen = []
    layer = next(m for m in hf_module(nlp).modules() if isinstance(m, torch.nn.Linear))
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    docs = list(nlp.pipe(texts))
    handle.remove()
    return seen, docs


def test_bf16_forward_gives_fp32_outputs_close_to_fp32(tiny_model_dir):
    base = tiny_model_dir("bert")
    fp32, bf16 = pipeline(base, "fp32"), pipeline(base, "bf16")
    fp32.initialize()
    bf16.initialize()
    bf16.get_pipe("transformer").model.from_bytes(fp32.get_pipe("transformer").model.to_bytes())  # same weights
    dtypes32, docs32 = linear_dtypes(fp32, TEXTS)
    dtypes16, docs16 = linear_dtypes(bf16, TEXTS)
    assert set(dtypes32) == {torch.float32} and set(dtypes16) == {torch.bfloat16}
    for a, b in zip(docs32, docs16):
        x, y = a._.trf_data.model_output.last_hidden_state, b._.trf_data.model_output.last_hidden_state
        assert x.dtype == y.dtype == numpy.float32 and x.shape == y.shape
        # bf16 keeps 8 bits of mantissa: hidden states (layer-normed, unit scale) agree to a few 1e-2
        assert numpy.abs(x - y).max() < 0.1 and numpy.abs(x - y).mean() < 0.02


def test_auto_is_decided_where_the_pipeline_runs(tiny_model_dir, monkeypatch):
    nlp = pipeline(tiny_model_dir("bert"), "auto")
    nlp.initialize()
    assert set(linear_dtypes(nlp, TEXTS[:1])[0]) == {torch.float32}  # no native bf16 (conftest)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert set(linear_dtypes(nlp, TEXTS[:1])[0]) == {torch.bfloat16}


def test_bad_precision_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="precision must be one of"):
        pipeline(tiny_model_dir("bert"), "half")


def test_bf16_training_learns_and_saves_fp32_weights(tiny_model_dir, tmp_path):
    nlp = pipeline(tiny_model_dir("bert"), "bf16", ner=True)
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in TRAIN]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 2e-3
    losses = []
    for _ in range(40):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step["ner"])
    assert sum(losses[-5:]) < 0.25 * sum(losses[:5])
    assert all(p.dtype == torch.float32 for p in hf_module(nlp).parameters())  # master weights stay fp32
    nlp.to_disk(tmp_path / "pipe")
    # the transformer's weights on disk: spacy-transformers' msgpack of a torch state dict, in fp32
    import srsly

    shims = srsly.msgpack_loads((tmp_path / "pipe" / "transformer" / "model").read_bytes())["shims"]
    state = srsly.msgpack_loads(next(s for node in shims for s in node))["state"]
    weights = torch.load(io.BytesIO(state), weights_only=True)
    assert weights and {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    loaded = spacy.load(tmp_path / "pipe")
    assert precision_of(loaded.get_pipe("transformer").model) == "bf16"
    # the config decides, not the saved model: a user can score an fp32 copy of the same pipeline
    as_fp32 = spacy.load(tmp_path / "pipe", config={"components": {"transformer": {"model": {"precision": "fp32"}}}})
    assert set(linear_dtypes(as_fp32, TEXTS[:1])[0]) == {torch.float32}
    ents = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe([t for t, _ in TRAIN])]
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in loaded.pipe([t for t, _ in TRAIN])] == ents
    gold = {(i, s, e, label) for i, (_, spans) in enumerate(TRAIN) for s, e, label in spans}
    found = {(i, s, e, label) for i, spans in enumerate(ents) for s, e, label in spans}
    assert found and found <= gold  # what it finds after 40 updates is right

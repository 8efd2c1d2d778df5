"""DS-term sensitivity and batch packing."""
import math

import pytest
import torch
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config

from spacy_msnr.corpus.iob import iob_to_docs
from spacy_msnr.mslm.masking import encode_doc
from spacy_msnr.mslm.metrics import ds_term_sensitivity, pack
from spacy_msnr.mslm.model import hf_model_of
from spacy_msnr.mslm.terms import GoldTerms


def test_pack_respects_the_wordpiece_budget():
    lengths = [10, 30, 5, 70, 20, 20, 200]
    batches = pack(lengths, range(len(lengths)), 60)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 60
    assert [6] in batches


@pytest.fixture(scope="module")
def model_and_seqs(tiny_model_dir, data_dir):
    cfg = Config().from_str("""
[model]
@architectures = "spacy_msnr.MaskSpecificMLM.v1"
name = null
[model.masker]
@msnr_maskers = "spacy_msnr.uniform.v1"
[model.weighting]
@msnr_weightings = "spacy_msnr.unweighted.v1"
""", overrides={"model.name": str(tiny_model_dir("bert"))})
    model = registry.resolve(cfg)["model"]
    docs = iob_to_docs(data_dir / "blurb" / "NCBI-disease-IOB" / "test.tsv", Vocab())[:20]
    seqs = [encode_doc(d, model.attrs["tokenizer"], GoldTerms()(d), 160) for d in docs]
    return model, seqs


def test_sensitivity_counts_every_term_piece_and_is_deterministic(model_and_seqs):
    model, seqs = model_and_seqs
    first = ds_term_sensitivity(model, seqs, seed=3)
    assert first["n_term"] == sum(int((s.term_ids >= 0).sum()) for s in seqs)
    assert 0 < first["n_generic"] < sum(int((s.term_ids < 0).sum()) for s in seqs)
    rebatched = ds_term_sensitivity(model, seqs, seed=3, batch_size=128)
    assert rebatched.keys() == first.keys()
    assert all(rebatched[k] == pytest.approx(first[k], rel=1e-5) for k in first)
    for key in ("term_prob", "term_acc", "generic_prob", "generic_acc"):
        assert 0 <= first[key] <= 1


def test_sensitivity_matches_a_direct_computation(model_and_seqs):
    model, seqs = model_and_seqs
    seq = next(s for s in seqs if s.n_terms)
    got = ds_term_sensitivity(model, [seq], blm_rate=0.0)
    tok = model.attrs["tokenizer"]
    ids = torch.tensor(seq.input_ids)
    where = torch.from_numpy(seq.term_ids >= 0)
    masked = ids.clone()
    masked[where] = tok.mask_token_id
    hf = hf_model_of(model).eval()
    with torch.no_grad():
        probs = torch.softmax(hf(input_ids=masked[None]).logits[0], -1)
    gold = probs[where].gather(1, ids[where][:, None])[:, 0]
    assert got["term_prob"] == pytest.approx(float(gold.mean()), abs=1e-5)
    assert got["term_acc"] == pytest.approx(float((probs[where].argmax(-1) == ids[where]).float().mean()))
    assert got["n_generic"] == 0 and math.isnan(got["generic_prob"])

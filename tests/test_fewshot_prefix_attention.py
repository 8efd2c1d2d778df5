import pytest
import spacy
import torch

import util  # tests/util.py
from spacy_msnr.fewshot import prefix_attention
from spacy_msnr.fewshot.decoding import SpanConstraint, generate
from spacy_msnr.fewshot.prefix_attention import SharedPrefix, prefix_attention as attend
from spacy_msnr.fewshot.prompts import PromptBuilder


class _Layer(torch.nn.Module):
    layer_idx = 0


def test_attention_equals_sdpa_over_each_rows_own_copy_of_its_prefix():
    """Two jobs with prefixes of different lengths, grouped-query heads (4 query heads on 2
    key/value heads), padded own keys: the result is SDPA over [prefix of the row's job; the
    row's own keys] with its heads repeated, row by row."""
    torch.manual_seed(0)
    rows, heads, kv, t, s, d = 5, 4, 2, 3, 4, 8
    prefixes = [(torch.randn(kv, 7, d), torch.randn(kv, 7, d)), (torch.randn(kv, 2, d), torch.randn(kv, 2, d))]
    row_jobs = [0, 0, 1, 1, 1]
    q, k, v = torch.randn(rows, heads, t, d), torch.randn(rows, kv, s, d), torch.randn(rows, kv, s, d)
    allow = torch.rand(rows, 1, t, s) > 0.4
    allow[1, :, :, :] = False  # a row that sees nothing of its own: only its prefix
    got, _ = attend(_Layer(), q, k, v, allow, scaling=0.3, msnr_prefix=SharedPrefix([prefixes], row_jobs))
    assert got.shape == (rows, t, heads, d)
    for r, job in enumerate(row_jobs):
        kp, vp = prefixes[job]
        keys = torch.cat([kp, k[r]], 1).repeat_interleave(heads // kv, 0)
        values = torch.cat([vp, v[r]], 1).repeat_interleave(heads // kv, 0)
        mask = torch.cat([torch.ones(1, t, kp.shape[1], dtype=torch.bool), allow[r]], -1)
        want = torch.nn.functional.scaled_dot_product_attention(q[r], keys, values, attn_mask=mask, scale=0.3)
        assert torch.allclose(got[r].transpose(0, 1), want, atol=1e-5)


def test_groups_follow_rows_after_selection():
    prefix = SharedPrefix([[]], [0, 0, 1, 2, 2])
    assert prefix.groups() == [(0, 2, 0), (2, 3, 1), (3, 5, 2)]
    prefix.select([1, 3])
    assert prefix.row_jobs == [0, 2]
    assert prefix.groups() == [(0, 1, 0), (1, 2, 2)]


def test_supported_model_types(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    for family, expected in (("llama", True), ("qwen2", True), ("gpt2", False)):
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir(family)))
        assert prefix_attention.supported(getattr(model, model.base_model_prefix)) is expected


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_decoding_with_a_shared_prefix_equals_a_copy_per_row(tiny_model_dir, family, monkeypatch):
    """The decoder's answers and their log-probabilities are those of the per-row cache copies,
    in batches that mix jobs of different prefix lengths (one shared head, then each text) and
    prompts of different lengths (left-padded), and the model's attention setting is left as it
    was."""
    from spacy_msnr.fewshot.model import LoRACausalLMShim

    shim = LoRACausalLMShim(None)
    shim.load(str(tiny_model_dir(family)), {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}, "float32", None, 0)
    with torch.no_grad():
        for name, p in shim.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    shim.tokenizer.chat_template = util.CHAT_TEMPLATE
    b = PromptBuilder(shim.tokenizer, {"LOC": "a place", "PER": "a person"})
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in ["Rome and Paris .", "A long walk to New York , then back to Rome .", "x y"]]
    segs = [s for i, d in enumerate(docs) for s in b.segments(d, i, 1000)]
    head = b.prefix_ids("LOC")
    assert b.text_first and head == b.prefix_ids("PER")
    assert len(b.suffix_ids("LOC")) != len(b.suffix_ids("PER"))
    config = shim.model.get_base_model().config
    before = config._attn_implementation

    def decode():
        cons = [SpanConstraint(seg.input_ids, seg.starts, seg.ends, b.markers) for seg in segs for _ in range(2)]
        # one job per segment: its text is the prefix (lengths differ), the two types' questions follow
        jobs = [(head + seg.input_ids, [b.suffix_ids("LOC"), b.suffix_ids("PER")], cons[2 * k: 2 * k + 2])
                for k, seg in enumerate(segs)]
        generate(shim.model, jobs, max_new_tokens=16, batch_size=3, pad_id=shim.tokenizer.pad_token_id, shared=len(head))
        return [(c.logprobs, [(f.first, f.last) for f in c.spans()]) for c in cons]

    shared = decode()
    assert config._attn_implementation == before
    monkeypatch.setattr(prefix_attention, "supported", lambda backbone: False)
    copied = decode()
    assert any(len(lp) > 1 for lp, _ in shared)  # some answers went past their first token
    for (lp1, sp1), (lp2, sp2) in zip(shared, copied):
        assert sp1 == sp2
        assert lp1 == pytest.approx(lp2, abs=1e-4)

"""Tokenizers trained on local text for each model family."""
import pytest
from transformers import AutoTokenizer

from spacy_msnr.base.tokenizer import train_tokenizer


@pytest.mark.parametrize("family,mask", [("bert", "[MASK]"), ("roberta", "<mask>"), ("llama", None), ("gpt2", None)])
def test_special_tokens_and_offsets(tiny_tokenizer, family, mask):
    tok = tiny_tokenizer(family)
    assert len(tok) == 1000
    assert tok.mask_token == mask
    assert tok.pad_token is not None
    text = "Mutations in APC2 cause colorectal cancer."
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = [text[a:b] for a, b in enc["offset_mapping"]]
    assert "".join(p.strip() for p in pieces) == text.replace(" ", "")


def test_save_and_reload_gives_same_ids(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer("bert")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Familial adenomatous polyposis and BRCA1 mutations."
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.convert_ids_to_tokens(again(text)["input_ids"])[0] == "[CLS]"


def test_unknown_family():
    with pytest.raises(ValueError, match="Unknown model family 'bart'"):
        train_tokenizer(["some text"], "bart")

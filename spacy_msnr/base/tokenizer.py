"""Train a small Hugging Face tokenizer on local text, so no hub download is needed."""
from typing import Iterable, Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

TokenizerKind = Literal["wordpiece", "bpe"]

#: The tokenizer style each model family gets.
FAMILY_TOKENIZER = {"bert": "wordpiece", "roberta": "roberta", "llama": "bpe", "qwen2": "bpe", "gpt2": "bpe"}


def train_tokenizer(
    texts: Iterable[str], family: str = "bert", *, vocab_size: int = 8000, lowercase: bool = False
) -> PreTrainedTokenizerFast:
    """Train a tokenizer for `family` ("bert", "roberta", "llama", "qwen2", "gpt2") on `texts`.

    BERT gets a WordPiece tokenizer with [CLS]/[SEP]/[MASK]; RoBERTa a byte-level BPE with
    <s>/</s>/<mask>; the causal families a byte-level BPE with <s> (bos), </s> (eos) and <pad>.
    """
    style = FAMILY_TOKENIZER.get(family)
    if style is None:
        raise ValueError(f"Unknown model family {family!r}; expected one of {sorted(FAMILY_TOKENIZER)}")
    if style == "wordpiece":
        return _train_wordpiece(texts, vocab_size, lowercase)
    return _train_bpe(texts, vocab_size, masked=(style == "roberta"))


def _train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool) -> PreTrainedTokenizerFast:
    from transformers import BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special, min_frequency=2)
    tok.train_from_iterator(_nonempty(texts), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(
        tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]", sep_token="[SEP]",
        pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
    )


def _train_bpe(texts: Iterable[str], vocab_size: int, masked: bool) -> PreTrainedTokenizerFast:
    special = ["<pad>", "<s>", "</s>", "<unk>"] + (["<mask>"] if masked else [])
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_nonempty(texts), trainer=trainer)
    if masked:
        from transformers import RobertaTokenizerFast

        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        tok.post_processor = processors.RobertaProcessing(sep=("</s>", eos), cls=("<s>", bos), add_prefix_space=True)
        return RobertaTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
            unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", add_prefix_space=True,
        )
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def _nonempty(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        if text and text.strip():
            yield text

"""thinc layers of mask-specific LM adaptation and the registered architecture composing them.

    masking layer (List[EncodedSeq] -> MaskedBatch)  >>  masked-LM layer (-> MLMOutput)

The masked-LM layer wraps a Hugging Face `AutoModelForMaskedLM` in a `PyTorchShim` subclass that
adds autocast (the package's precision setting, `spacy_msnr.precision`) and safetensors serialisation. It runs the encoder on the whole
(masked) batch but the vocabulary projection only at masked positions, so the cost of the
output layer scales with the number of masks, not with the batch. An optional token
classification head on the last hidden layer gives the joint objective L_MLM + lambda * L_NER.
The loss objects (`MaskSpecificLoss`, `TaggerLoss`) travel in `model.attrs`.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchShim, chain
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..precision import autocast_dtype as precision_dtype
from ..precision import autocast_to, check_precision
from .loss import MaskSpecificLoss, TaggerLoss, Weighting
from .masking import EncodedSeq, MaskedBatch, Masker, Replacer, check_tokenizer, mask_batch

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class MLMOutput:
    """Logits at the masked positions [M, V], tag logits [B, T, n_tags] (or None), and the batch."""

    logits: torch.Tensor
    tag_logits: Optional[torch.Tensor]
    batch: MaskedBatch


class MaskedLMModule(torch.nn.Module):
    """A masked LM that projects to the vocabulary only at the given (flattened) positions."""

    def __init__(self, hf_model: PreTrainedModel):
        super().__init__()
        self.hf = hf_model
        prefix = hf_model.base_model_prefix
        heads = [n for n, m in hf_model.named_children() if n != prefix and any(True for _ in m.parameters())]
        # BERT (cls), RoBERTa (lm_head) and their kin have one head module; otherwise use full logits.
        self.head_name = heads[0] if len(heads) == 1 else None
        self.tagger: Optional[torch.nn.Linear] = None

    def set_tagger(self, n_tags: int) -> None:
        """Add (or replace) a token-classification head with `n_tags` outputs."""
        hidden = self.hf.config.hidden_size
        device = next(self.hf.parameters()).device
        self.tagger = torch.nn.Linear(hidden, n_tags).to(device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.head_name is not None:
            hidden = self.hf.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]
            logits = getattr(self.hf, self.head_name)(hidden.reshape(-1, hidden.shape[-1])[positions])
        else:
            out = self.hf(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.tagger is not None)
            hidden = out.hidden_states[-1] if self.tagger is not None else None
            logits = out.logits.reshape(-1, out.logits.shape[-1])[positions]
        tags = self.tagger(hidden) if self.tagger is not None else None
        return logits, tags


class MLMShim(PyTorchShim):
    """PyTorchShim with autocast and safetensors (de)serialisation.

    `precision` ("auto", "fp32", "bf16") picks the autocast dtype where the model runs;
    `gpu_dtype` instead (MaskSpecificMLM.v1's `mixed_precision`) autocasts to that dtype on GPU
    only. Gradient scaling for fp16 is left to the training loop (torch's GradScaler on the
    gradient fed to backprop); bf16 needs none.
    """

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", gpu_dtype: Optional[str] = None):
        super().__init__(model, mixed_precision=False, device=torch.device("cpu"),
                         serialize_model=_serialize_module, deserialize_model=_deserialize_module)
        self.precision = check_precision(precision)
        self.gpu_dtype = gpu_dtype

    def autocast_dtype(self) -> Optional[torch.dtype]:
        """The dtype the forward autocasts to on the shim's current device (None: fp32)."""
        device = self.device
        if self.gpu_dtype is not None:
            return AUTOCAST_DTYPES[self.gpu_dtype] if device.type == "cuda" else None
        return precision_dtype(self.precision, device)

    def _autocast(self):
        return autocast_to(self.autocast_dtype(), self.device)

    def predict(self, inputs: ArgsKwargs) -> Any:
        self._model.eval()
        with torch.no_grad(), self._autocast():
            outputs = self._model(*inputs.args, **inputs.kwargs)
        self._model.train()
        return outputs

    def begin_update(self, inputs: ArgsKwargs):
        self._model.train()
        with self._autocast():
            output = self._model(*inputs.args, **inputs.kwargs)

        def backprop(grads: ArgsKwargs) -> ArgsKwargs:
            torch.autograd.backward(*grads.args, **grads.kwargs)
            return ArgsKwargs(args=(), kwargs={})

        return output, backprop


def _serialize_module(module: torch.nn.Module) -> bytes:
    from safetensors.torch import save

    # Cloning un-ties shared tensors (tied embeddings), which safetensors refuses to store twice.
    return save({k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()})


def _deserialize_module(module: torch.nn.Module, data: bytes, device: torch.device) -> torch.nn.Module:
    from safetensors.torch import load

    state = load(data)
    if any(k.startswith("tagger.") for k in state) and module.tagger is None:
        module.set_tagger(state["tagger.weight"].shape[0])
    module.load_state_dict(state)
    return module.to(device)


def _convert_inputs(model: Model, batch: MaskedBatch, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    device = model.shims[0].device
    kwargs = {
        "input_ids": batch.input_ids.to(device, non_blocking=True),
        "attention_mask": batch.attention_mask.to(device, non_blocking=True),
        "positions": batch.positions.to(device, non_blocking=True),
    }
    return ArgsKwargs(args=(), kwargs=kwargs), lambda d: batch


def _convert_outputs(model: Model, inputs_outputs: Tuple[MaskedBatch, Any], is_train: bool) -> Tuple[MLMOutput, Callable]:
    batch, (logits, tags) = inputs_outputs

    def backprop(d_out: Tuple[torch.Tensor, Optional[torch.Tensor]]) -> ArgsKwargs:
        d_logits, d_tags = d_out
        outputs, grads = [logits], [d_logits]
        if tags is not None and d_tags is not None:
            outputs.append(tags)
            grads.append(d_tags)
        return ArgsKwargs(args=(tuple(outputs),), kwargs={"grad_tensors": tuple(grads)})

    return MLMOutput(logits, tags, batch), backprop


def masked_lm_layer(module: MaskedLMModule, precision: str = "fp32", gpu_dtype: Optional[str] = None) -> Model[MaskedBatch, MLMOutput]:
    """The masked LM as a thinc layer: MaskedBatch -> MLMOutput; backprop takes (d_logits, d_tags).
    `precision` and `gpu_dtype`: see MLMShim."""
    return Model(
        "msnr_masked_lm", pytorch_forward,
        attrs={"convert_inputs": _convert_inputs, "convert_outputs": _convert_outputs},
        shims=[MLMShim(module, precision=precision, gpu_dtype=gpu_dtype)],
    )


def masking_layer(masker: Masker, replacer: Replacer, seed: int = 0) -> Model[List[EncodedSeq], MaskedBatch]:
    """Draws masks for a batch of encoded docs. `attrs["rng"]` is the generator it draws from:
    the training loop sets a fresh, seeded one per batch so masks are dynamic and reproducible."""

    def forward(model: Model, seqs: List[EncodedSeq], is_train: bool) -> Tuple[MaskedBatch, Callable]:
        if not seqs:
            raise ValueError("Cannot mask an empty batch")
        return mask_batch(seqs, model.attrs["masker"], model.attrs["replacer"], model.attrs["rng"]), lambda d: []

    return Model("msnr_masking", forward, attrs={"masker": masker, "replacer": replacer, "rng": np.random.default_rng(seed)})


def load_masked_lm(name: Union[str, Path]) -> Tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a masked LM and its fast tokenizer, with clear errors for unusable checkpoints."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name), use_fast=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"Could not load a tokenizer from {name!r}: {err}") from err
    check_tokenizer(tokenizer)
    try:
        hf_model, info = AutoModelForMaskedLM.from_pretrained(str(name), output_loading_info=True)
    except ValueError as err:
        raise ValueError(
            f"{name!r} has no masked-LM head that transformers knows ({err.__class__.__name__}: {str(err).splitlines()[0]}). "
            "MSLM adapts BERT-family masked LMs (BERT, RoBERTa, ...); causal LMs cannot be used."
        ) from err
    prefix = hf_model.base_model_prefix + "."
    tied = set(getattr(hf_model, "_tied_weights_keys", None) or [])
    missing_head = [k for k in info["missing_keys"] if not k.startswith(prefix) and k not in tied]
    if missing_head:
        raise ValueError(
            f"{name!r} has no trained masked-LM head (missing {missing_head[:3]}...): it was saved "
            "without one (e.g. an encoder-only AutoModel). Adapt a checkpoint saved with its MLM head."
        )
    if len(tokenizer) > hf_model.config.vocab_size:
        raise ValueError(f"Tokenizer of {name!r} has {len(tokenizer)} pieces but the model only {hf_model.config.vocab_size}")
    return hf_model, tokenizer


@registry.architectures("spacy_msnr.MaskSpecificMLM.v2")
def build_mask_specific_mlm_v2(
    name: str,
    masker: Masker,
    weighting: Weighting,
    ner_weight: float = 0.0,
    precision: str = "auto",
    seed: int = 0,
) -> Model[List[EncodedSeq], MLMOutput]:
    """Masking layer >> masked LM loaded from `name` (hub id or directory), with the loss in attrs.

    `ner_weight` > 0 adds a tagging head trained jointly (loss L_MLM + ner_weight * L_NER); its
    labels come from `model.attrs["tag_labels"]`, set before `model.initialize()`. `precision`
    ("auto", "fp32", "bf16"; `spacy_msnr.precision`) sets the forward's autocast on CPU and GPU.
    """
    return _build(name, masker, weighting, ner_weight, seed, precision=precision)


@registry.architectures("spacy_msnr.MaskSpecificMLM.v1")
def build_mask_specific_mlm(
    name: str,
    masker: Masker,
    weighting: Weighting,
    ner_weight: float = 0.0,
    mixed_precision: bool = False,
    autocast_dtype: str = "bfloat16",
    seed: int = 0,
) -> Model[List[EncodedSeq], MLMOutput]:
    """As MaskSpecificMLM.v2, with v1's precision: `mixed_precision` autocasts to `autocast_dtype`
    ("bfloat16" or "float16") on GPU only, fp32 on CPU."""
    if autocast_dtype not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast_dtype must be one of {sorted(AUTOCAST_DTYPES)}, got {autocast_dtype!r}")
    return _build(name, masker, weighting, ner_weight, seed, precision="fp32",
                  gpu_dtype=autocast_dtype if mixed_precision else None)


def _build(name: str, masker: Masker, weighting: Weighting, ner_weight: float, seed: int, precision: str,
           gpu_dtype: Optional[str] = None) -> Model[List[EncodedSeq], MLMOutput]:
    if ner_weight < 0:
        raise ValueError(f"ner_weight must be >= 0, got {ner_weight}")
    check_precision(precision)
    hf_model, tokenizer = load_masked_lm(name)
    mlm = masked_lm_layer(MaskedLMModule(hf_model), precision, gpu_dtype)
    masking = masking_layer(masker, Replacer(tokenizer), seed)
    model = chain(masking, mlm)
    model.name = "msnr_mask_specific_mlm"
    model.set_ref("masking", masking)
    model.set_ref("mlm", mlm)
    model.attrs.update(
        tokenizer=tokenizer, masker=masker, loss=MaskSpecificLoss(weighting),
        tagger_loss=TaggerLoss(ner_weight), ner_weight=ner_weight, tag_labels=[],
    )
    chain_init = model.init

    def init(model: Model, X: Optional[Sequence[EncodedSeq]] = None, Y: Any = None) -> None:
        chain_init(model, X=None, Y=None)
        _init(model, X, Y)

    model.init = init
    return model


def _init(model: Model, X: Optional[Sequence[EncodedSeq]] = None, Y: Any = None) -> None:
    """Let the masker gather corpus statistics and add the tagging head when asked."""
    if X is not None:
        model.attrs["masker"].initialize(X)
    labels = model.attrs.get("tag_labels") or []
    if model.attrs["ner_weight"] > 0 and labels:
        torch_module(model).set_tagger(len(labels))


def torch_module(model: Model) -> MaskedLMModule:
    """The MaskedLMModule inside a model built by build_mask_specific_mlm."""
    return model.get_ref("mlm").shims[0]._model


def hf_model_of(model: Model) -> PreTrainedModel:
    """The Hugging Face model being adapted."""
    return torch_module(model).hf


TAGGER_WEIGHTS = "mslm_tagger.safetensors"
TAGGER_META = "mslm_tagger.json"


def save_pretrained(model: Model, path: Union[str, Path]) -> None:
    """Write the adapted model and its tokenizer as a Hugging Face directory (safetensors).

    A joint tagging head, if the model has one, goes beside them: its weights in
    `mslm_tagger.safetensors` and its BIO labels in `mslm_tagger.json` (see `load_tagger`).
    """
    import srsly
    from safetensors.torch import save_file

    path = Path(path)
    hf_model_of(model).save_pretrained(str(path), safe_serialization=True)
    model.attrs["tokenizer"].save_pretrained(str(path))
    tagger = torch_module(model).tagger
    if tagger is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in tagger.state_dict().items()}, str(path / TAGGER_WEIGHTS))
        srsly.write_json(path / TAGGER_META, {"labels": list(model.attrs["tag_labels"]), "hidden_size": tagger.in_features})
    else:  # never leave an older run's head beside a model it does not belong to
        for name in (TAGGER_WEIGHTS, TAGGER_META):
            (path / name).unlink(missing_ok=True)


def load_tagger(path: Union[str, Path]) -> Tuple[torch.nn.Linear, List[str]]:
    """The joint tagging head saved by `save_pretrained` and its BIO labels (index = output row).

    It reads the last hidden layer of the model in the same directory:
    `tagger(AutoModel.from_pretrained(path)(**inputs).last_hidden_state).argmax(-1)`.
    """
    import srsly
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / TAGGER_WEIGHTS).exists():
        raise FileNotFoundError(f"{path} has no {TAGGER_WEIGHTS}: it was adapted without a tagging head (model.ner_weight = 0)")
    meta = srsly.read_json(path / TAGGER_META)
    state = load_file(str(path / TAGGER_WEIGHTS))
    n_tags, hidden = state["weight"].shape
    if n_tags != len(meta["labels"]):
        raise ValueError(f"{path / TAGGER_META} names {len(meta['labels'])} labels but the head has {n_tags} outputs")
    tagger = torch.nn.Linear(hidden, n_tags)
    tagger.load_state_dict(state)
    return tagger, list(meta["labels"])


__all__ = ["build_mask_specific_mlm", "build_mask_specific_mlm_v2", "MLMOutput", "MaskedLMModule", "MLMShim", "load_masked_lm", "save_pretrained", "load_tagger"]

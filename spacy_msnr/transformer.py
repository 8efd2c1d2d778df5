"""spacy-transformers' `TransformerModel` with the package's precision setting.

`spacy_msnr.TransformerModel.v1` is `spacy-transformers.TransformerModel.v3` whose Hugging Face
forward runs under bf16 autocast where `precision` says so (see `spacy_msnr.precision`), with
its outputs cast back to fp32 before thinc converts them: thinc's `torch2xp` cannot hold bf16,
so a plain `torch.autocast` around `nlp.pipe` fails. The weights, their saved form and the
component's serialization are those of spacy-transformers (fp32); only the forward changes.
"""
from typing import Any, Callable, List, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import FullTransformerBatch
from spacy_transformers.layers import TransformerModel
from thinc.api import Model
from thinc.layers.pytorchwrapper import forward as pytorch_forward

from .precision import autocast, check_precision, to_fp32


@registry.architectures("spacy_msnr.TransformerModel.v1")
def build_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    precision: str = "auto",
) -> Model[List[Doc], FullTransformerBatch]:
    """A pretrained transformer (hub name or folder) to fine-tune or score, as
    spacy-transformers.TransformerModel.v3 (without its fp16 `mixed_precision`), computing in
    `precision` ("auto", "fp32" or "bf16")."""
    model = TransformerModel(name, get_spans, tokenizer_config, transformer_config)
    set_precision(model, precision)
    return model


def set_precision(model: TransformerModel, precision: str) -> None:
    """Make the Hugging Face layer of a spacy-transformers TransformerModel compute in `precision`.

    The setting lives in the layer's forward function, not in its attrs: thinc saves attrs with
    the weights and would let a saved value override the config on `spacy.load`."""
    hf_layer = model.layers[0]
    if not isinstance(hf_layer._func, AutocastForward):
        hf_layer.attrs["convert_outputs"] = _fp32_outputs(hf_layer.attrs["convert_outputs"])
    hf_layer._func = AutocastForward(check_precision(precision))


def precision_of(model: TransformerModel) -> str:
    """The precision setting of a model built by `spacy_msnr.TransformerModel.v1` ("fp32" for others)."""
    forward = model.layers[0]._func
    return forward.precision if isinstance(forward, AutocastForward) else "fp32"


class AutocastForward:
    """thinc's PyTorch forward under the autocast of `precision`. Only the forward runs under
    autocast: backprop is called later, outside this context, as autocast requires."""

    def __init__(self, precision: str):
        self.precision = precision

    def __call__(self, model: Model, X: Any, is_train: bool) -> Tuple[Any, Callable]:
        with autocast(self.precision, model.shims[0].device):
            return pytorch_forward(model, X, is_train)


def _fp32_outputs(convert_outputs: Callable) -> Callable:
    def convert(model: Model, inputs_outputs: Tuple[Any, Any], is_train: bool) -> Tuple[Any, Callable]:
        inputs, outputs = inputs_outputs
        return convert_outputs(model, (inputs, to_fp32(outputs)), is_train)

    return convert


__all__ = ["build_transformer_model", "set_precision", "precision_of"]

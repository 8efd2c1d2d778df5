"""Mask-specific language modeling (MSLM): domain-term-aware masked-LM adaptation.

Importing the package registers its term sources, maskers, weightings, the AdamW optimizer
and the `spacy_msnr.MaskSpecificMLM.v1` architecture.
"""
from . import loss, masking, optimizer, terms  # noqa: F401  (registrations)
from .model import build_mask_specific_mlm

__all__ = ["build_mask_specific_mlm"]

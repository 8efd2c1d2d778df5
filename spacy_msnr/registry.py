"""The package's own catalogue registries, created on spaCy's registry.

Config files refer to them as ``@msnr_terms``, ``@msnr_maskers``, ``@msnr_weightings`` and
``@msnr_optimizers``; other packages can add functions through the entry-point groups
``thinc_msnr_terms``, ``thinc_msnr_maskers``, ``thinc_msnr_weightings`` and
``thinc_msnr_optimizers`` (spaCy's registry lives in thinc's namespace).
"""
from spacy.util import registry

#: Sources of domain-specific terms (gold spans, lexicon, frequency contrast).
registry.create("msnr_terms", entry_points=True)
terms = registry.msnr_terms
#: Masking strategies (MSLM joint ELM+BLM and the baselines).
registry.create("msnr_maskers", entry_points=True)
maskers = registry.msnr_maskers
#: Weightings of the mask-specific loss (softmax of the masked-term share, inverse frequency).
registry.create("msnr_weightings", entry_points=True)
weightings = registry.msnr_weightings
#: Torch optimizers of the MSLM training loop (not thinc optimizers: not for spaCy's [training]).
registry.create("msnr_optimizers", entry_points=True)
optimizers = registry.msnr_optimizers

__all__ = ["registry", "terms", "maskers", "weightings", "optimizers"]

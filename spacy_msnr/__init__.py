"""spaCy components for mask-specific LM adaptation (MSLM) and few-shot NER (CLLMFS)."""
from . import registry  # noqa: F401  (creates the msnr_* registries)
from .about import __version__

__all__ = ["__version__", "registry"]

"""CLLMFS: few-shot NER with a LoRA-tuned causal LM, contrastive and adversarial training, and
span-constrained decoding, as the spaCy component `fewshot_ner`."""
from .component import FewShotNER, make_fewshot_ner
from .model import build_lora_instruction_ner

__all__ = ["FewShotNER", "make_fewshot_ner", "build_lora_instruction_ner"]

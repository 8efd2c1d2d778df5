"""spacy-msnr: mask-specific LM adaptation and LoRA-contrastive few-shot NER for spaCy."""
from pathlib import Path

from setuptools import find_packages, setup

about = {}
exec((Path(__file__).parent / "spacy_msnr" / "about.py").read_text(), about)

setup(
    name="spacy-msnr",
    version=about["__version__"],
    description=__doc__,
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]),
    package_data={"spacy_msnr": ["py.typed"]},
    install_requires=[
        "spacy>=3.8.18,<3.9.0",
        "spacy-transformers>=1.4.0,<1.5.0",
        "thinc>=8.3.0,<8.4.0",
        "torch>=2.1",
        "transformers>=4.41,<4.53.3",
        "tokenizers>=0.19",
        "safetensors>=0.4",
        "peft>=0.21,<0.22",
        "typer>=0.9",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "build>=1.0"],
        "plot": ["matplotlib>=3.5"],
        # Reads GGUF checkpoints (the SmolLM2 base of the few-shot workflow) with transformers' own loader.
        "gguf": ["gguf==0.19.0"],
        # `annotate --engine ray`: Ray Data over a local or existing cluster.
        "ray": ["ray[data]>=2.40,<3", "pyarrow>=14"],
    },
    entry_points={
        "console_scripts": ["spacy-msnr = spacy_msnr.__main__:main"],
        "spacy_factories": ["fewshot_ner = spacy_msnr.fewshot.component:make_fewshot_ner"],
        "spacy_architectures": [
            "spacy_msnr.MaskSpecificMLM.v1 = spacy_msnr.mslm.model:build_mask_specific_mlm",
            "spacy_msnr.LoRAInstructionNER.v1 = spacy_msnr.fewshot.model:build_lora_instruction_ner",
            "spacy_msnr.LoRAInstructionNER.v2 = spacy_msnr.fewshot.model:build_lora_instruction_ner_v2",
        ],
        "thinc_msnr_terms": [
            "spacy_msnr.gold_terms.v1 = spacy_msnr.mslm.terms:make_gold_terms",
            "spacy_msnr.lexicon_terms.v1 = spacy_msnr.mslm.terms:make_lexicon_terms",
            "spacy_msnr.frequency_contrast_terms.v1 = spacy_msnr.mslm.terms:make_frequency_contrast_terms",
            "spacy_msnr.combined_terms.v1 = spacy_msnr.mslm.terms:make_combined_terms",
        ],
        "thinc_msnr_maskers": [
            "spacy_msnr.mask_specific.v1 = spacy_msnr.mslm.masking:make_mask_specific",
            "spacy_msnr.uniform.v1 = spacy_msnr.mslm.masking:make_uniform",
            "spacy_msnr.whole_word.v1 = spacy_msnr.mslm.masking:make_whole_word",
            "spacy_msnr.span.v1 = spacy_msnr.mslm.masking:make_span",
            "spacy_msnr.pmi_ngram.v1 = spacy_msnr.mslm.masking:make_pmi",
        ],
        "thinc_msnr_weightings": [
            "spacy_msnr.softmax_share.v1 = spacy_msnr.mslm.loss:make_softmax_share",
            "spacy_msnr.inverse_frequency.v1 = spacy_msnr.mslm.loss:make_inverse_frequency",
            "spacy_msnr.unweighted.v1 = spacy_msnr.mslm.loss:make_unweighted",
        ],
        "thinc_optimizers": ["spacy_msnr.AdamW.v1 = spacy_msnr.mslm.optimizer:reject_as_thinc_optimizer"],
        "thinc_msnr_optimizers": ["spacy_msnr.AdamW.v1 = spacy_msnr.mslm.optimizer:make_adamw"],
    },
    classifiers=["Framework :: spaCy", "Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)

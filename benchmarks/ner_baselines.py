"""spaCy's CNN `ner` beside transformer+ner pipelines, trained on the same data in one run.

Rows: spaCy's CNN `ner`; `configs/ner_trf.cfg` on the unadapted base encoder (default: the
workflow's all-MiniLM-L6-v2 at assets/models/minilm-l6; "local" builds the small local BERT);
and, with --adapted, the same config on an MSLM-adapted model (e.g. the workflow's
training/mslm). Prints test P/R/F1, training minutes and inference words/second (texts through
the full pipeline, tokenizer included) and writes the table to
benchmarks/results/workflows/ner_baselines.{json,md}.

    python benchmarks/ner_baselines.py --trf-steps 300 --trf-lr 3e-4 --adapted training/mslm
"""
import json
import os
import time
from datetime import date
from pathlib import Path
from typing import Dict, List

import spacy
import typer
from spacy.cli.evaluate import evaluate
from spacy.cli.init_config import init_config
from spacy.cli.train import train
from spacy.tokens import DocBin

from spacy_msnr.base.build import build_base
from spacy_msnr.corpus.iob import iob_to_docs

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def words_per_second(model: Path, texts: List[str], repeats: int = 2) -> float:
    """Best of `repeats` timed passes of nlp.pipe over raw texts."""
    nlp = spacy.load(model)
    list(nlp.pipe(texts[:50]))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n_words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=64))
        best = max(best, n_words / (time.perf_counter() - start))
    return best


def main(
    dataset: str = typer.Option("NCBI-disease-IOB", help="BLURB set under ../shared/data/blurb"),
    work: Path = typer.Option(ROOT / "benchmarks" / "work" / "ner_baselines", help="Scratch folder"),
    base_model: str = typer.Option(str(ROOT / "assets" / "models" / "minilm-l6"), help="Unadapted masked LM or encoder for the transformer; 'local' builds the small local base"),
    adapted: str = typer.Option("", help="An MSLM-adapted model directory for a third row (e.g. training/mslm)"),
    adapted_note: str = typer.Option("", help="How --adapted was made, for the table's note (e.g. 'head warm-up 100 + MSLM 100 steps')"),
    base_seconds: float = typer.Option(150, help="Pretraining budget of the local base"),
    cnn_steps: int = typer.Option(0, help="Max steps for the CNN (0: until early stopping)"),
    trf_steps: int = typer.Option(300, help="Max steps for the transformer pipelines"),
    trf_lr: float = typer.Option(3e-4, help="Peak learning rate of the transformer pipelines"),
    precision: str = typer.Option("fp32", help="The transformer's precision: auto, fp32 or bf16 (the committed table: fp32)"),
) -> None:
    work.mkdir(parents=True, exist_ok=True)
    corpus: Dict[str, Path] = {}
    for split in ("train", "devel", "test"):
        corpus[split] = work / f"{split}.spacy"
        vocab = spacy.blank("en").vocab
        DocBin(docs=iob_to_docs(DATA / "blurb" / dataset / f"{split}.tsv", vocab)).to_disk(corpus[split])
    if base_model == "local":
        base_model = str(work / "base")
        build_base(base_model, [corpus["train"]], max_steps=100000, max_seconds=base_seconds)
    cnn_cfg = work / "cnn.cfg"
    init_config(lang="en", pipeline=["ner"], optimize="efficiency", gpu=False).to_disk(cnn_cfg)
    paths = {"paths.train": str(corpus["train"]), "paths.dev": str(corpus["devel"])}
    trf = {**paths, "training.max_steps": trf_steps, "training.optimizer.learn_rate.initial_rate": trf_lr,
           "training.logger.progress_bar": False, "components.transformer.model.precision": precision}
    label = "local base" if base_model == str(work / "base") else f"{Path(base_model).name}, unadapted"
    runs = {
        "spaCy CNN ner": ("cnn", cnn_cfg, {**paths, **({"training.max_steps": cnn_steps} if cnn_steps else {})}),
        f"transformer+ner ({label})": ("trf", ROOT / "configs" / "ner_trf.cfg", {**trf, "paths.base_model": base_model}),
    }
    if adapted:
        runs[f"transformer+ner ({Path(adapted).name}, MSLM-adapted)"] = (
            "trf_adapted", ROOT / "configs" / "ner_trf.cfg", {**trf, "paths.base_model": adapted})
    texts = [doc.text for doc in DocBin().from_disk(corpus["test"]).get_docs(spacy.blank("en").vocab)]
    rows = []
    for name, (folder, config, overrides) in runs.items():
        out = work / folder
        start = time.perf_counter()
        train(config, out, overrides=overrides)
        minutes = (time.perf_counter() - start) / 60
        scores = evaluate(str(out / "model-best"), corpus["test"])
        rows.append({"pipeline": name, "train_minutes": round(minutes, 1), "P": round(100 * scores["ents_p"], 2),
                     "R": round(100 * scores["ents_r"], 2), "F1": round(100 * scores["ents_f"], 2),
                     "words_per_second": round(words_per_second(out / "model-best", texts))})
    lines = [f"Test set: {dataset}; transformer rows: {trf_steps} steps, learn rate {trf_lr}, configs/ner_trf.cfg", "| pipeline | train min | P | R | F1 | words/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['pipeline']} | {r['train_minutes']} | {r['P']} | {r['R']} | {r['F1']} | {r['words_per_second']:,} |" for r in rows]
    print("\n".join(lines))
    results = ROOT / "benchmarks" / "results" / "workflows"
    results.mkdir(parents=True, exist_ok=True)
    facts = {"adapted": adapted_note or adapted, "seed": 0, "date": date.today().isoformat(),  # seed: configs' system.seed
             "machine": f"a {os.cpu_count()}-core CPU machine", "threads": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"}
    (results / "ner_baselines.json").write_text(json.dumps({"dataset": dataset, "trf_steps": trf_steps, "trf_lr": trf_lr, "rows": rows, **facts},
                                                           indent=2))
    (results / "ner_baselines.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    typer.run(main)

"""fp32 against bf16 (the package's `precision` setting) side by side in one run, on this machine:
matmuls, MSLM updates, transformer + ner updates and scoring (`nlp.pipe`, `annotate`), and
fewshot_ner scoring and updates. Every pair runs alternately (fp32, bf16, fp32, ...) `--repeats`
times on the same inputs; the table keeps each side's median and their ratio, and the scoring rows
say how many documents got exactly the same entities both ways.

    python benchmarks/precision_speed.py --pipeline W/training/ner/model-best --test W/corpus/test.spacy \
        --train W/corpus/train.spacy --mlm-base W/training/base --abstracts W/assets/pubmed/abstracts.jsonl \
        [--causal assets/models/smollm2-135m-instruct --crossner ../shared/data/crossner/politics] \
        --output benchmarks/results/precision/precision_speed.json

W is a folder the `all` workflow ran in (e.g. benchmarks/workflow_run.py's --work). Threads: torch's
default (both cores here) unless OMP_NUM_THREADS says otherwise; the JSON records both.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import spacy
import torch
from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam

from spacy_msnr.precision import autocast, cpu_has_native_bf16

SIDES = ("fp32", "bf16")


def alternate(run: Callable[[str], float], repeats: int) -> Dict[str, List[float]]:
    """run(side) -> a rate, called fp32, bf16, fp32, bf16, ... `repeats` times each."""
    rates: Dict[str, List[float]] = {side: [] for side in SIDES}
    for _ in range(repeats):
        for side in SIDES:
            rates[side].append(run(side))
    return rates


def row(what: str, unit: str, rates: Dict[str, List[float]], **extra) -> Dict:
    medians = {side: statistics.median(values) for side, values in rates.items()}
    out = {"what": what, "unit": unit, "fp32": medians["fp32"], "bf16": medians["bf16"],
           "ratio": medians["bf16"] / medians["fp32"], "runs": rates, **extra}
    print(f"{what}: fp32 {out['fp32']:,.1f} / bf16 {out['bf16']:,.1f} {unit} = {out['ratio']:.2f}x", flush=True)
    return out


def matmul_rows(repeats: int) -> List[Dict]:
    rows = []
    for m, k, n, label in ((1024, 384, 1536, "MiniLM FFN"), (1024, 576, 1536, "SmolLM2 FFN"), (64, 576, 1536, "SmolLM2 FFN, 64 rows")):
        a, b = torch.randn(m, k), torch.randn(k, n)

        def run(side: str) -> float:
            with autocast(side, torch.device("cpu")):
                a @ b
                start, calls = time.perf_counter(), 0
                while time.perf_counter() - start < 0.5:
                    a @ b
                    calls += 1
            return 2 * m * k * n * calls / (time.perf_counter() - start) / 1e9

        rows.append(row(f"matmul {m}x{k} . {k}x{n} ({label})", "GFLOP/s", alternate(run, repeats)))
    return rows


def ents_of(docs) -> List[Tuple]:
    return [tuple((e.start_char, e.end_char, e.label_) for e in doc.ents) for doc in docs]


def load_trf(path: Path, side: str):
    return spacy.load(path, config={"components": {"transformer": {"model": {"precision": side}}}})


def trf_rows(pipeline: Path, test: Path, train: Optional[Path], abstracts: Optional[Path], repeats: int,
             n_abstracts: int) -> List[Dict]:
    nlps = {side: load_trf(pipeline, side) for side in SIDES}
    gold = list(DocBin().from_disk(test).get_docs(nlps["fp32"].vocab))
    texts = [doc.text for doc in gold]
    words = sum(len(doc) for doc in gold)
    found: Dict[str, List] = {}

    def score(side: str) -> float:
        start = time.perf_counter()
        docs = list(nlps[side].pipe(texts, batch_size=64))
        seconds = time.perf_counter() - start
        found[side] = docs
        return words / seconds

    rates = alternate(score, repeats)
    same = sum(a == b for a, b in zip(ents_of(found["fp32"]), ents_of(found["bf16"])))
    f1 = {side: 100 * Scorer.score_spans([Example(p, g) for p, g in zip(found[side], gold)], "ents")["ents_f"] for side in SIDES}
    rows = [row("transformer + ner, `nlp.pipe` over the test split", "words/s", rates, docs=len(texts),
                same_entities=same, test_f1=f1)]
    print(f"  same entities on {same}/{len(texts)} docs; test F1 fp32 {f1['fp32']:.2f}, bf16 {f1['bf16']:.2f}", flush=True)
    if abstracts is not None:
        rows.append(annotate_row(pipeline, abstracts, repeats, n_abstracts))
    if train is not None:
        rows.append(trf_update_row(pipeline, train, repeats))
    return rows


def annotate_row(pipeline: Path, abstracts: Path, repeats: int, limit: int) -> Dict:
    """`annotate` (local engine) over `limit` abstracts with the pipeline saved in each precision."""
    from spacy_msnr.annotate import annotate

    work = Path(tempfile.mkdtemp(prefix="precision-annotate-"))
    try:
        lines = abstracts.read_text(encoding="utf8").splitlines()[:limit]
        (work / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf8")
        for side in SIDES:
            load_trf(pipeline, side).to_disk(work / side)
        records: Dict[str, List] = {}

        def run(side: str) -> float:
            out = work / f"out-{side}"
            shutil.rmtree(out, ignore_errors=True)
            summary = annotate(str(work / side), [str(work / "in.jsonl")], out, format="jsonl", progress=False)
            records[side] = [json.loads(line) for f in sorted(out.glob("**/*.jsonl")) if f.name != "errors.jsonl"
                             for line in f.read_text().splitlines()]
            return summary.docs_per_second

        rates = alternate(run, repeats)
        keyed = {side: {r["id"]: [(e["start_char"], e["end_char"], e["label"]) for e in r["entities"]] for r in records[side]}
                 for side in SIDES}
        same = sum(keyed["fp32"][k] == keyed["bf16"].get(k) for k in keyed["fp32"])
        print(f"  annotate: same entities on {same}/{len(keyed['fp32'])} abstracts", flush=True)
        return row(f"`annotate` (local engine) over {len(lines)} PubMed abstracts", "docs/s", rates,
                   docs=len(keyed["fp32"]), same_entities=same)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def trf_update_row(pipeline: Path, train: Path, repeats: int, n_docs: int = 256, batch: int = 32) -> Dict:
    """transformer + ner updates (the `all` workflow's training) on the first `n_docs` training docs."""
    words = {}

    def run(side: str) -> float:
        nlp = load_trf(pipeline, side)
        docs = list(DocBin().from_disk(train).get_docs(nlp.vocab))[:n_docs]
        examples = [Example(nlp.make_doc(d.text), d) for d in docs]
        optimizer = nlp.resume_training(sgd=Adam(1e-4))  # the saved config's schedule is not interpolated
        words[side] = sum(len(d) for d in docs)
        start = time.perf_counter()
        for i in range(0, len(examples), batch):
            nlp.update(examples[i:i + batch], sgd=optimizer)
        return words[side] / (time.perf_counter() - start)

    return row(f"transformer + ner updates ({n_docs} training docs, batches of {batch})", "words/s", alternate(run, repeats))


def mslm_row(base: Path, train: Path, repeats: int, steps: int = 6) -> Dict:
    """MSLM forward + backward (MaskSpecificMLM.v2, the workflow's masker and weighting) on fixed batches."""
    from thinc.api import Config
    from spacy.util import registry

    from spacy_msnr.mslm.masking import encode_doc
    from spacy_msnr.mslm.terms import GoldTerms
    from spacy_msnr.mslm.train import update_micro_batch

    models, seqs = {}, None
    for side in SIDES:
        cfg = Config({"model": {"@architectures": "spacy_msnr.MaskSpecificMLM.v2", "name": str(base), "precision": side,
                                "masker": {"@msnr_maskers": "spacy_msnr.mask_specific.v1", "elm_rate": 1.0, "blm_rate": 0.15},
                                "weighting": {"@msnr_weightings": "spacy_msnr.softmax_share.v1"}}})
        model = registry.resolve(cfg)["model"]
        if seqs is None:
            docs = list(DocBin().from_disk(train).get_docs(spacy.blank("en").vocab))[:16 * steps]
            seqs = [encode_doc(d, model.attrs["tokenizer"], GoldTerms()(d), 128) for d in docs]
        model.initialize(X=seqs)
        models[side] = model

    def run(side: str) -> float:
        model = models[side]
        model.get_ref("masking").attrs["rng"] = np.random.default_rng(0)
        pieces, start = 0, time.perf_counter()
        for i in range(steps):
            pieces += update_micro_batch(model, seqs[16 * i:16 * (i + 1)])["wordpieces"]
        return pieces / (time.perf_counter() - start)

    return row(f"MSLM forward + backward ({steps} batches of 16 docs)", "wordpieces/s", alternate(run, repeats))


def fewshot_rows(causal: Path, crossner: Path, repeats: int, n_queries: int = 40) -> List[Dict]:
    """fewshot_ner on the causal LM (untrained adapters, 5 most frequent types of the domain's
    test split): scoring `n_queries` test sentences and updates on 5 of them."""
    from spacy_msnr.corpus.iob import iob_to_docs

    vocab = spacy.blank("en").vocab
    docs = iob_to_docs(crossner / "test.txt", vocab)
    labels = [label for label, _ in Counter(e.label_ for d in docs for e in d.ents).most_common(5)]
    texts = [d.text for d in docs[:n_queries]]
    nlps = {}
    for side in SIDES:
        nlp = spacy.blank("en")
        nlp.add_pipe("fewshot_ner", config={"labels": labels, "model": {"base_model": str(causal), "dtype": side}})
        nlp.initialize()
        nlps[side] = nlp
    found: Dict[str, List] = {}

    def score(side: str) -> float:
        start = time.perf_counter()
        found[side] = list(nlps[side].pipe(texts))
        return len(texts) / (time.perf_counter() - start)

    rates = alternate(score, repeats)
    same = sum(a == b for a, b in zip(ents_of(found["fp32"]), ents_of(found["bf16"])))
    rows = [row(f"fewshot_ner scoring ({len(labels)} types, {len(texts)} {crossner.name} test sentences)", "sentences/s",
                rates, docs=len(texts), same_entities=same)]
    print(f"  fewshot_ner: same entities on {same}/{len(texts)} sentences", flush=True)
    support = []
    for doc in docs:  # the first 5 sentences with one of the types, annotated for those types only
        if len(support) < 5 and any(e.label_ in labels for e in doc.ents):
            ref = doc.copy()
            ref.ents = [e for e in doc.ents if e.label_ in labels]
            support.append(ref)

    def update(side: str) -> float:
        nlp = nlps[side]
        examples = [Example(nlp.make_doc(d.text), d) for d in support]
        optimizer = nlp.create_optimizer()
        start = time.perf_counter()
        nlp.update(examples, sgd=optimizer)
        return len(examples) / (time.perf_counter() - start)

    rows.append(row(f"fewshot_ner update (5 support sentences x {len(labels)} types)", "sentences/s", alternate(update, repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", type=Path, help="A trained transformer + ner pipeline folder")
    parser.add_argument("--test", type=Path, help="Its test split (.spacy)")
    parser.add_argument("--train", type=Path, help="Its training split (.spacy): transformer + ner and MSLM updates")
    parser.add_argument("--mlm-base", type=Path, help="A masked LM folder with its MLM head (the workflow's training/base)")
    parser.add_argument("--abstracts", type=Path, help="PubMed abstracts (.jsonl) for `annotate`")
    parser.add_argument("--n-abstracts", type=int, default=200)
    parser.add_argument("--causal", type=Path, help="A causal LM folder for fewshot_ner (e.g. assets/models/smollm2-135m-instruct)")
    parser.add_argument("--crossner", type=Path, help="A CrossNER domain folder (test.txt)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    started, load_before = datetime.now(timezone.utc), os.getloadavg()
    rows = matmul_rows(args.repeats)
    write(args, started, load_before, rows)  # after each part, so that a failure keeps what was measured
    if args.mlm_base and args.train:
        rows.append(mslm_row(args.mlm_base, args.train, args.repeats))
        write(args, started, load_before, rows)
    if args.pipeline and args.test:
        rows += trf_rows(args.pipeline, args.test, args.train, args.abstracts, args.repeats, args.n_abstracts)
        write(args, started, load_before, rows)
    if args.causal and args.crossner:
        rows += fewshot_rows(args.causal, args.crossner, args.repeats)
        write(args, started, load_before, rows)
    print(f"wrote {args.output}")


def write(args: argparse.Namespace, started: datetime, load_before: Tuple[float, ...], rows: List[Dict]) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    out = {
        "date": started.date().isoformat(), "repeats": args.repeats, "rows": rows,
        "machine": {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "cpu_native_bf16": cpu_has_native_bf16(),
                    "torch": torch.__version__, "load_before": [round(x, 2) for x in load_before]},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

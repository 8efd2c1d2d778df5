"""`python -m spacy_msnr calibrate`: a pipeline's entity scores against a gold DocBin, each label's
isotonic calibrator and the lowest score threshold that reaches a target precision, as JSON."""
import json
from pathlib import Path

import typer
from wasabi import msg

from ..util import atomic_write_bytes
from ._app import GPU_ID_OPTION, app, use_gpu, user_errors


def _num(value, spec: str = ".3f") -> str:
    """A number for the per-label line, "-" for None."""
    return "-" if value is None else format(value, spec)


@app.command("calibrate")
def calibrate_cli(
    pipeline: str = typer.Argument(..., help="Pipeline to load: an installed package name or a folder"),
    gold: Path = typer.Argument(..., help="DocBin (.spacy) with gold entities; its texts are run through the pipeline", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="JSON file to write (per label: calibrator, ECE, threshold, precision, coverage, counts)"),
    target_precision: float = typer.Option(0.95, "--target-precision", "-p", help="Precision the threshold must reach on the gold data"),
    bins: int = typer.Option(10, "--bins", help="Equal-width bins of the expected calibration error"),
    gpu_id: int = GPU_ID_OPTION,
) -> None:
    """Calibrate a pipeline's entity scores on gold Docs: per label, an isotonic map score ->
    precision, the ECE before and after it, and the lowest raw score whose entities reach the
    target precision (with its coverage). Entities match gold on exact offsets and label."""
    import spacy
    from spacy.tokens import DocBin

    from ..review.calibrate import calibrate

    use_gpu(gpu_id)
    with user_errors():
        if not 0.0 < target_precision <= 1.0:
            raise ValueError(f"--target-precision must be in (0, 1], not {target_precision}")
        nlp = spacy.load(pipeline)
        golds = list(DocBin().from_disk(gold).get_docs(nlp.vocab))
        result = calibrate(nlp.pipe(d.text for d in golds), golds, target_precision=target_precision, bins=bins)
    atomic_write_bytes(output, (json.dumps(result, indent=2, ensure_ascii=False) + "\n").encode("utf8"))
    msg.good(f"Calibrated {len(result['labels'])} labels on {len(golds)} docs (target precision {target_precision:g}) -> {output}")
    for label, row in result["labels"].items():
        msg.text(
            f"  {label}: ECE {_num(row['ece_raw'])} -> {_num(row['ece_calibrated'])}, threshold {_num(row['threshold'])}, "
            f"precision {_num(row['precision'])}, coverage {_num(row['coverage'])} "
            f"({row['predictions']} scored, {row['correct']} correct, {row['gold']} gold, {row['unscored']} unscored)"
        )

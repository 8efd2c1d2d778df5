"""`python -m spacy_msnr fewshot-merge`: a trained fewshot_ner's LoRA weights merged into its base
model, saved as a plain causal-LM folder (the base of a second, target-domain stage)."""
from pathlib import Path

import typer
from wasabi import msg

from ._app import GPU_ID_OPTION, app, use_gpu, user_errors


@app.command("fewshot-merge")
def fewshot_merge_cli(
    pipeline: Path = typer.Argument(..., help="Trained pipeline folder (e.g. training/fewshot/model-best)", exists=True),
    output: Path = typer.Argument(..., help="Folder for the merged Hugging Face causal LM"),
    component: str = typer.Option("fewshot_ner", "--component", "-c", help="Name of the few-shot NER component"),
    gpu_id: int = GPU_ID_OPTION,
) -> None:
    """Merge a trained fewshot_ner's adapters into its base model and save it (safetensors and
    tokenizer), e.g. after source-domain training: give OUTPUT as `base_model` of the next stage."""
    import spacy

    from ..fewshot.model import get_shim

    use_gpu(gpu_id)
    with user_errors():
        nlp = spacy.load(pipeline)
    if component not in nlp.pipe_names:
        msg.fail(f"{pipeline}: no component {component!r} (pipeline: {', '.join(nlp.pipe_names)})", exits=1)
    shim = get_shim(nlp.get_pipe(component).model)
    if not shim.loaded:
        msg.fail(f"{pipeline}: component {component!r} was never initialized or trained", exits=1)
    with user_errors():
        shim.save_merged(output)
    msg.good(f"{output}: {shim.meta['base_model']} with the adapters of {pipeline} merged in")

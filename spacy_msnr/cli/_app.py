"""The typer app that every command module adds itself to."""
import typer

app = typer.Typer(
    name="spacy-msnr",
    help="Mask-specific LM adaptation and few-shot NER for spaCy pipelines.",
    no_args_is_help=True,
    add_completion=False,
)

#: Context settings for commands that take spaCy-style config overrides (--section.key value).
OVERRIDES_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}

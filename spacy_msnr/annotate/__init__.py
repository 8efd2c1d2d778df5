"""Annotate a whole corpus with a pipeline, locally (`nlp.pipe`) or on Ray, exactly once per shard."""
from .job import Summary, annotate

__all__ = ["Summary", "annotate"]

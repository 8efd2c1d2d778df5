"""The local engine: `nlp.pipe` on this machine, with `n_process` worker processes."""
from itertools import chain
from typing import Iterator, Optional, Sequence

import spacy

from .readers import Chunk, Row, read_chunk
from .records import annotate_rows


def run_local(
    model: str, chunks: Sequence[Chunk], *, batch_size: int = 64, n_process: int = 1, max_length: Optional[int] = None,
    keep_docs: bool = False, gpu_id: int = -1,
) -> Iterator[Row]:
    """Output rows of all chunks, in order, from one `nlp.pipe` stream over them (on GPU `gpu_id`, -1: CPU)."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    rows = chain.from_iterable(read_chunk(chunk) for chunk in chunks)
    yield from annotate_rows(nlp, rows, batch_size=batch_size, n_process=n_process, max_length=max_length, keep_docs=keep_docs)

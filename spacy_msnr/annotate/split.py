"""Split a text longer than a pipeline's `max_length` into pieces that cover it exactly.

The pieces are contiguous (whitespace stays at the end of the piece before it), so an entity at
`start` in the piece at `offset` is at `offset + start` in the text, and no character is lost.
Each cut is at the last boundary that fits: a blank line (paragraph) if there is one, else a
line break, else a sentence end (`.`, `!` or `?` then whitespace), else whitespace; only a run
of more than `max_length` characters without whitespace is cut inside a word.
"""
import re
from bisect import bisect_right
from typing import List, Tuple

#: Boundaries in order of preference; a cut goes at the end of a match.
BOUNDARIES = (re.compile(r"\n[^\S\n]*\n\s*"), re.compile(r"\n\s*"), re.compile(r"(?<=[.!?])[\"')\]]*\s+"), re.compile(r"\s+"))


def split_text(text: str, max_length: int) -> List[Tuple[int, str]]:
    """(offset, piece) pairs, each piece at most `max_length` characters, joining back to `text`."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if len(text) <= max_length:
        return [(0, text)]
    cuts = [[m.end() for m in pattern.finditer(text)] for pattern in BOUNDARIES]
    pieces, start = [], 0
    while len(text) - start > max_length:
        limit = start + max_length
        end = limit
        for positions in cuts:
            i = bisect_right(positions, limit)
            if i and positions[i - 1] > start:
                end = positions[i - 1]
                break
        pieces.append((start, text[start:end]))
        start = end
    pieces.append((start, text[start:]))
    return pieces

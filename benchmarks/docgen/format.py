"""Formatting helpers of the generated tables: cells, Markdown tables, mean ± std, notes, links."""
import textwrap
import statistics
from typing import Any, Iterable, Optional, Sequence, Tuple

from .sources import result


# -- formatting -------------------------------------------------------------------------------------
def cell(text: Any) -> str:
    """A table cell from plain text: `|` escaped, and `<`/`>` outside code spans as entities."""
    parts = str(text).split("`")
    for i, part in enumerate(parts):
        part = part.replace("|", "\\|")
        parts[i] = part if i % 2 else part.replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Optional[str] = None) -> str:
    """A Markdown table; `align` holds one of l/r per column (default: all left)."""
    rule = ["---:" if a == "r" else "---" for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Sequence[float], digits: int = 2, signed: bool = False, of: Optional[int] = None) -> str:
    """'mean ± sample std' ('(n = k)' added when fewer than `of` values); '–' for none."""
    if not values:
        return "–"
    sign = "+" if signed else ""
    mean = statistics.mean(values)
    if len(values) == 1:
        out = f"{mean:{sign}.{digits}f}"
    else:
        out = f"{mean:{sign}.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    if of is not None and len(values) < of:
        out += f" (n = {len(values)})"
    return out.replace("-", "−")


def signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def note(*parts: str) -> str:
    """A caption paragraph under a table, wrapped at 100 characters (never inside a word)."""
    text = " ".join(p.strip() for p in parts if p)
    return "\n\n" + textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def source_link(name: str, prefix: str) -> str:
    return f"[`{name}`]({prefix}{result(name)})"




#: Two-sided 95 % quantiles of Student's t by degrees of freedom (n − 1 for n paired runs).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t_interval(diffs: Sequence[float]) -> Tuple[float, float, float]:
    """(mean, low, high): the 95 % t-interval of the mean of paired differences (n ≥ 2)."""
    mean = statistics.mean(diffs)
    half = T975[len(diffs) - 1] * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def paired_interval(diffs: Sequence[float], digits: int = 2) -> str:
    """'mean [low, high]' of paired differences: the 95 % t-interval of their mean (n ≥ 2)."""
    if len(diffs) < 2:
        return signed(diffs[0], digits) + " (n = 1)" if diffs else "–"
    mean, low, high = t_interval(diffs)
    return f"{signed(mean, digits)} [{signed(low, digits)}, {signed(high, digits)}]"

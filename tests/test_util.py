"""Atomic writes keep the old output when a write fails."""
import pytest

from spacy_msnr.util import atomic_dir, atomic_write_bytes


def test_atomic_dir_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v1")
    assert (out / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v2")
    assert (out / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_write_bytes(tmp_path):
    path = tmp_path / "a" / "b.bin"
    atomic_write_bytes(path, b"123")
    atomic_write_bytes(path, b"45")
    assert path.read_bytes() == b"45" and sorted(p.name for p in path.parent.iterdir()) == ["b.bin"]


def test_registered_functions_resolve_through_entry_points():
    """Every name declared in pyproject.toml's entry points loads (as spacy.load would, without --code)."""
    from importlib.metadata import entry_points

    groups = ["spacy_factories", "spacy_architectures", "thinc_msnr_terms", "thinc_msnr_maskers",
              "thinc_msnr_weightings", "thinc_msnr_optimizers", "thinc_optimizers"]
    ours = [ep for group in groups for ep in entry_points(group=group) if ep.value.startswith("spacy_msnr.")]
    assert len(ours) >= 16
    for ep in ours:
        assert callable(ep.load()), ep

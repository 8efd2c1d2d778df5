"""Assets come from the mirror or the URL, are checksum-verified, and a bad fetch leaves nothing."""
import hashlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.cli.assets import asset_source, fetch

ROOT = Path(__file__).resolve().parent.parent


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_project_assets_match_the_shared_data(data_dir, tmp_path):
    shutil.copy(ROOT / "project.yml", tmp_path / "project.yml")
    result = CliRunner().invoke(app, ["assets", str(tmp_path), "--mirror", str(data_dir), "--extra"])
    assert result.exit_code == 0, result.output
    fetched = sorted((tmp_path / "assets").glob("*/*/*.*"))
    assert len(fetched) == 24
    for path in fetched:
        assert md5(path) == md5(data_dir / path.relative_to(tmp_path / "assets"))
    again = CliRunner().invoke(app, ["assets", str(tmp_path), "--mirror", str(data_dir)])
    assert again.exit_code == 0 and again.output.count("checksum matches") == 3


def test_url_is_used_when_the_mirror_lacks_the_file(tmp_path):
    asset = {"dest": "assets/blurb/X/train.tsv", "url": "https://example.org/train.tsv"}
    assert asset_source(asset, tmp_path) == "https://example.org/train.tsv"
    (tmp_path / "blurb" / "X").mkdir(parents=True)
    (tmp_path / "blurb" / "X" / "train.tsv").write_text("a\tO\n")
    assert asset_source(asset, tmp_path) == str(tmp_path / "blurb" / "X" / "train.tsv")


def test_checksum_mismatch_fails_and_keeps_the_old_file(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "set").mkdir(parents=True)
    (mirror / "set" / "train.tsv").write_text("tampered\tO\n")
    project = tmp_path / "project"
    (project / "assets" / "set").mkdir(parents=True)
    old = project / "assets" / "set" / "train.tsv"
    old.write_text("old\tO\n")
    asset = {"dest": "assets/set/train.tsv", "url": "https://example.org/x", "checksum": "0" * 32}
    with pytest.raises(ValueError, match="Checksum mismatch for assets/set/train.tsv"):
        fetch(asset, project, mirror)
    assert old.read_text() == "old\tO\n"
    assert sorted(p.name for p in old.parent.iterdir()) == ["train.tsv"]

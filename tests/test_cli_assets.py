"""Assets come from the mirror or the URL, are checksum-verified, and a bad fetch leaves nothing."""
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import srsly
from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.cli.assets import asset_source, fetch

ROOT = Path(__file__).resolve().parent.parent
#: The real corpora (laid out like assets/), only for the slow checksum test.
REAL_DATA = Path(os.environ.get("MSNR_SHARED_DATA") or "/nonexistent")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fetch_from_mirror(project: Path, mirror: Path) -> list:
    """`assets --extra` fetches every URL asset of project.yml from `mirror`, byte for byte; a
    second run without `--extra` finds the three NCBI-disease files in place. Returns the files."""
    result = CliRunner().invoke(app, ["assets", str(project), "--mirror", str(mirror), "--extra"])
    assert result.exit_code == 0, result.output
    fetched = sorted((project / "assets").glob("*/*/*.*"))
    for path in fetched:
        assert md5(path) == md5(mirror / path.relative_to(project / "assets"))
    again = CliRunner().invoke(app, ["assets", str(project), "--mirror", str(mirror)])
    assert again.exit_code == 0 and again.output.count("checksum matches") == 3 and "fetched" not in again.output
    return fetched


def test_project_assets_are_fetched_from_the_mirror(data_dir, tmp_path):
    """project.yml's own asset entries for the fixture slices, with the slices' checksums."""
    config = srsly.read_yaml(ROOT / "project.yml")
    slices = sorted(str(p.relative_to(data_dir)) for p in data_dir.glob("*/*/*.*"))
    assets = [a for a in config["assets"] if "url" in a and str(Path(*Path(a["dest"]).parts[1:])) in slices]
    assert sorted(str(Path(*Path(a["dest"]).parts[1:])) for a in assets) == slices and len(slices) == 7
    config["assets"] = [{**a, "checksum": md5(data_dir / Path(*Path(a["dest"]).parts[1:]))} for a in assets]
    srsly.write_yaml(tmp_path / "project.yml", config)
    fetched = fetch_from_mirror(tmp_path, data_dir)
    assert [str(p.relative_to(tmp_path / "assets")) for p in fetched] == slices


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "blurb").is_dir(), reason="needs the real corpora: set MSNR_SHARED_DATA to their folder")
def test_project_assets_match_the_real_corpora(tmp_path):
    """The checksums in project.yml are those of the real files."""
    shutil.copy(ROOT / "project.yml", tmp_path / "project.yml")
    assert len(fetch_from_mirror(tmp_path, REAL_DATA)) == 24


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


PUBMED = [
    {"dest": "assets/pubmed/standoff_train", "git": {"repo": "https://github.com/spyysalo/jnlpba", "branch": "a" * 40, "path": "standoff/train"}},
    {"dest": "assets/pubmed/abstracts.jsonl", "checksum": "0" * 32},
]


def _write_project(project: Path, assets: list) -> None:
    project.mkdir(parents=True, exist_ok=True)
    srsly.write_yaml(project / "project.yml", {"title": "t", "assets": assets, "commands": [], "workflows": {}})


def test_a_jsonl_asset_is_copied_from_the_mirror_with_its_checksum(data_dir, tmp_path):
    abstracts = data_dir / "pubmed" / "abstracts.jsonl"
    _write_project(tmp_path / "p", [PUBMED[0], {**PUBMED[1], "checksum": md5(abstracts)}])
    result = CliRunner().invoke(app, ["assets", str(tmp_path / "p"), "--mirror", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert md5(tmp_path / "p" / "assets" / "pubmed" / "abstracts.jsonl") == md5(abstracts)
    assert not (tmp_path / "p" / "assets" / "pubmed" / "standoff_train").exists()  # the git asset was not needed


def test_without_the_mirror_the_jsonl_is_joined_from_the_pinned_git_folder(tmp_path, monkeypatch):
    """No mirror: the git asset is checked out (here: git_checkout replaced by a local copy) at
    its pinned commit and its .txt files are joined in name order, one {"id", "text"} a line."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "b.txt").write_text("Second abstract.\n", encoding="utf8")
    (upstream / "a.txt").write_text("First abstract.\nWith two lines.\n", encoding="utf8")
    (upstream / "a.ann").write_text("T1\tProtein 0 5\tFirst\n", encoding="utf8")
    calls = []

    def fake_checkout(repo, subpath, dest, *, branch="master", sparse=False):
        calls.append((repo, subpath, branch))
        shutil.copytree(upstream, dest)

    monkeypatch.setattr("spacy_msnr.cli.assets.git_checkout", fake_checkout)
    _write_project(tmp_path / "p", PUBMED)
    result = CliRunner().invoke(app, ["assets", str(tmp_path / "p"), "--mirror", str(tmp_path / "empty-mirror")])
    assert result.exit_code == 0, result.output
    assert calls == [("https://github.com/spyysalo/jnlpba", "standoff/train", "a" * 40)]
    lines = (tmp_path / "p" / "assets" / "pubmed" / "abstracts.jsonl").read_text(encoding="utf8").splitlines()
    assert [srsly.json_loads(line) for line in lines] == [{"id": "a", "text": "First abstract.\nWith two lines."}, {"id": "b", "text": "Second abstract."}]
    again = CliRunner().invoke(app, ["assets", str(tmp_path / "p")])
    assert again.exit_code == 0 and "checksum matches" in again.output and len(calls) == 1  # nothing fetched twice


def test_a_file_without_url_mirror_or_git_source_is_a_clear_error(tmp_path):
    _write_project(tmp_path / "p", [{"dest": "assets/x/data.jsonl", "checksum": "0" * 32}])
    result = CliRunner().invoke(app, ["assets", str(tmp_path / "p")])
    assert result.exit_code == 1 and "assets/x/data.jsonl has no URL and is not in the mirror" in " ".join(result.output.split())


def test_include_fetches_the_extra_assets_of_one_folder_only(data_dir, tmp_path):
    """`--include assets/blurb/BC5CDR-IOB` (the `assets` step with vars.dataset BC5CDR-IOB) brings
    that set's extra files as well as the default ones, and no other extra file."""
    config = srsly.read_yaml(ROOT / "project.yml")
    wanted = {"blurb/NCBI-disease-IOB/train.tsv", "blurb/BC5CDR-IOB/devel.tsv"}
    assets = [a for a in config["assets"] if str(Path(*Path(a["dest"]).parts[1:])) in wanted]
    assert [bool(a.get("extra")) for a in assets] == [False, True]
    other = {"dest": "assets/blurb/Other-IOB/train.tsv", "url": "https://example.org/never-fetched.tsv", "extra": True}
    config["assets"] = [{**a, "checksum": md5(data_dir / Path(*Path(a["dest"]).parts[1:]))} for a in assets] + [other]
    srsly.write_yaml(tmp_path / "project.yml", config)
    result = CliRunner().invoke(app, ["assets", str(tmp_path), "--mirror", str(data_dir), "--include", "assets/blurb/BC5CDR-IOB"])
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path / "assets")) for p in (tmp_path / "assets").glob("*/*/*.*")) == sorted(wanted)
    plain = CliRunner().invoke(app, ["assets", str(tmp_path), "--mirror", str(data_dir)])
    assert plain.exit_code == 0 and plain.output.count("checksum matches") == 1, plain.output
    typo = CliRunner().invoke(app, ["assets", str(tmp_path), "--mirror", str(data_dir), "--include", "assets/blurb/BC5CDR"])
    assert typo.exit_code == 1 and "no asset of project.yml is there" in typo.output and "assets/blurb/BC5CDR-IOB" in typo.output

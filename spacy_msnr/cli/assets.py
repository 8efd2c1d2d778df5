"""`assets`: fetch the project's assets from their canonical URLs or a local mirror, checksummed.

Three kinds of asset entry in project.yml:
- a URL asset: copied from `<mirror>/<dest below assets/>` when the mirror has it, else downloaded;
  its MD5 checksum must match either way;
- a git asset (a folder of a repository pinned to a commit): copied from the mirror, else
  checked out sparsely with git (the commit pins its content); fetched only when needed;
- a URL-less `.jsonl` asset: copied from the mirror (checksum verified), else made by joining the
  `.txt` files of the git asset in the same folder, in name order, one `{"id", "text"}` a line
  (its checksum is then the mirror's, so it is not compared; the pinned commit vouches for it).
"""
import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import typer
from wasabi import msg
from weasel.util import download_file, get_checksum, git_checkout, load_project_config

from ..util import atomic_write_bytes
from ._app import app


def mirror_path(asset: Dict, mirror: Optional[Path]) -> Optional[Path]:
    """`<mirror>/<dest below assets/>` if the mirror has it (a file, or a folder for a git asset)."""
    if mirror is None:
        return None
    candidate = mirror / Path(*Path(asset["dest"]).parts[1:])
    return candidate if (candidate.is_dir() if "git" in asset else candidate.is_file()) else None


def asset_source(asset: Dict, mirror: Optional[Path]) -> str:
    """Where to fetch `asset` from: `<mirror>/<dest below assets/>` if that file exists, else its URL."""
    found = mirror_path(asset, mirror)
    if found is not None:
        return str(found)
    if not asset.get("url"):
        raise ValueError(f"Asset {asset['dest']} has no URL and is not in the mirror {mirror}")
    return asset["url"]


def fetch(asset: Dict, project_dir: Path, mirror: Optional[Path]) -> str:
    """Fetch one asset unless a file with the right checksum is already there; verify the checksum.

    The file is written beside its destination and moved into place only once its checksum
    matches, so a failed or interrupted fetch never leaves a wrong file behind.
    """
    dest = project_dir / asset["dest"]
    checksum = asset.get("checksum")
    if dest.is_file() and checksum and get_checksum(dest) == checksum:
        return "present"
    source = asset_source(asset, mirror)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        partial = Path(tmp) / dest.name
        if Path(source).is_file():
            shutil.copyfile(source, partial)
        else:
            download_file(source, partial)
        got = get_checksum(partial)
        if checksum and got != checksum:
            raise ValueError(f"Checksum mismatch for {asset['dest']} from {source}: expected {checksum}, got {got}")
        partial.replace(dest)
    return source


def fetch_git(asset: Dict, project_dir: Path, mirror: Optional[Path]) -> str:
    """Fetch a git asset (a pinned repository folder) unless it is there: from the mirror, else with git."""
    dest = project_dir / asset["dest"]
    if dest.is_dir() and any(dest.iterdir()):
        return "present"
    found = mirror_path(asset, mirror)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        partial = Path(tmp) / dest.name
        if found is not None:
            shutil.copytree(found, partial)
        else:
            git = asset["git"]
            git_checkout(git["repo"], git.get("path", ""), partial, branch=git.get("branch", "master"), sparse=True)
        if dest.exists():
            shutil.rmtree(dest)
        partial.replace(dest)
    return str(found) if found is not None else f"{asset['git']['repo']}@{asset['git'].get('branch', 'master')}"


def join_texts(folder: Path, output: Path) -> int:
    """Write the `.txt` files of `folder`, in name order, as JSONL ({"id": stem, "text": ...}); returns the count."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise ValueError(f"{folder}: no .txt files to join")
    lines = [json.dumps({"id": f.stem, "text": f.read_text(encoding="utf8").strip()}, ensure_ascii=False) for f in files]
    atomic_write_bytes(output, ("\n".join(lines) + "\n").encode("utf8"))
    return len(files)


def fetch_derived(asset: Dict, git_assets: List[Dict], project_dir: Path, mirror: Optional[Path]) -> str:
    """A URL-less .jsonl asset: from the mirror (checksummed), else joined from its folder's git asset."""
    dest = project_dir / asset["dest"]
    if mirror_path(asset, mirror) is not None:
        return fetch(asset, project_dir, mirror)
    sources = [a for a in git_assets if Path(a["dest"]).parent == Path(asset["dest"]).parent]
    if not sources or dest.suffix != ".jsonl":
        raise ValueError(f"Asset {asset['dest']} has no URL and is not in the mirror {mirror}")
    folder = project_dir / sources[0]["dest"]
    if dest.is_file() and folder.is_dir():
        return "present"
    origin = fetch_git(sources[0], project_dir, mirror)
    count = join_texts(folder, dest)
    return f"{count} files of {sources[0]['dest']} ({origin if origin != 'present' else 'already there'})"


@app.command("assets")
def assets_cli(
    project_dir: Path = typer.Argument(Path("."), help="Folder holding project.yml", exists=True, file_okay=False),
    mirror: str = typer.Option("", "--mirror", help="Local folder laid out like assets/ (e.g. ../shared/data); used where it has the file"),
    extra: bool = typer.Option(False, "--extra", help="Also fetch assets marked extra"),
    include: List[str] = typer.Option([], "--include", help="Also fetch the extra assets under this folder (repeatable), e.g. assets/blurb/BC5CDR-IOB"),
) -> None:
    """Fetch the assets of project.yml (from a mirror folder when given) and verify checksums."""
    config = load_project_config(project_dir)
    mirror_dir = Path(mirror) if mirror else None
    if mirror_dir is not None and not mirror_dir.is_dir():
        msg.warn(f"Mirror folder {mirror_dir} not found; fetching from the URLs")
        mirror_dir = None
    folders = [Path(folder) for folder in include]

    def included(asset: Dict, folder: Path) -> bool:
        return folder == Path(asset["dest"]) or folder in Path(asset["dest"]).parents

    for folder in folders:
        if not any(included(a, folder) for a in config.get("assets", [])):
            known = sorted({str(Path(a["dest"]).parent) for a in config.get("assets", []) if a.get("extra")})
            msg.fail(f"--include {folder}: no asset of project.yml is there (folders with extra assets: {', '.join(known)})", exits=1)
    wanted = [a for a in config.get("assets", [])
              if extra or not a.get("extra") or any(included(a, folder) for folder in folders)]
    git_assets = [a for a in config.get("assets", []) if "git" in a]
    for asset in wanted:
        if "git" in asset:
            continue  # fetched when a file made from it is needed
        try:
            if asset.get("url"):
                source = fetch(asset, project_dir, mirror_dir)
            else:
                source = fetch_derived(asset, git_assets, project_dir, mirror_dir)
        except Exception as err:  # noqa: BLE001 - report which asset failed and stop
            msg.fail(f"Could not fetch {asset['dest']}: {err}", exits=1)
        msg.good(f"{asset['dest']}: {'checksum matches' if source == 'present' else 'fetched from ' + source}")

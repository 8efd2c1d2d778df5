"""`assets`: fetch the project's assets from their canonical URLs or a local mirror, checksummed."""
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import typer
from wasabi import msg
from weasel.util import download_file, get_checksum, load_project_config

from ._app import app


def asset_source(asset: Dict, mirror: Optional[Path]) -> str:
    """Where to fetch `asset` from: `<mirror>/<dest below assets/>` if that file exists, else its URL."""
    if mirror is not None:
        relative = Path(*Path(asset["dest"]).parts[1:])
        candidate = mirror / relative
        if candidate.is_file():
            return str(candidate)
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


@app.command("assets")
def assets_cli(
    project_dir: Path = typer.Argument(Path("."), help="Folder holding project.yml", exists=True, file_okay=False),
    mirror: str = typer.Option("", "--mirror", help="Local folder laid out like assets/ (e.g. ../shared/data); used where it has the file"),
    extra: bool = typer.Option(False, "--extra", help="Also fetch assets marked extra"),
) -> None:
    """Fetch the URL assets of project.yml (from a mirror folder when given) and verify checksums."""
    config = load_project_config(project_dir)
    mirror_dir = Path(mirror) if mirror else None
    if mirror_dir is not None and not mirror_dir.is_dir():
        msg.warn(f"Mirror folder {mirror_dir} not found; fetching from the URLs")
        mirror_dir = None
    assets: List[Dict] = [a for a in config.get("assets", []) if "url" in a and (extra or not a.get("extra"))]
    for asset in assets:
        try:
            source = fetch(asset, project_dir, mirror_dir)
        except Exception as err:  # noqa: BLE001 - report which asset failed and stop
            msg.fail(f"Could not fetch {asset['dest']}: {err}", exits=1)
        msg.good(f"{asset['dest']}: {'checksum matches' if source == 'present' else 'fetched from ' + source}")

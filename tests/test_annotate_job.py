"""The annotate job and command: kill -9 in the middle, rerun, every id exactly once."""
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from spacy_msnr.annotate import annotate
from spacy_msnr.annotate.writer import ShardMismatchError
from spacy_msnr.cli import app
from test_annotate_local import train_tiny_ner, valid_records, write_corpus


@pytest.fixture(scope="module")
def tiny_ner(data_dir, tmp_path_factory):
    return str(train_tiny_ner(data_dir, tmp_path_factory.mktemp("tiny_ner")))


def output_ids(folder):
    return [r["id"] for path in sorted(folder.glob("*.parquet")) for r in pq.read_table(path, columns=["id"]).to_pylist()]


def test_killed_run_resumes_and_writes_each_id_once(tiny_ner, data_dir, tmp_path):
    paths = write_corpus(data_dir, tmp_path / "in", 160, 8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "spacy_msnr", "annotate", tiny_ner, str(tmp_path / "in"), str(out), "--batch-size", "4", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((out / "_shards").glob("*.json")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list((out / "_shards").glob("*.json")))
    assert 1 <= done < 8, "the run must be killed after its first shard and before its last"
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Skipped {done} shards" in resumed.stdout
    ids = output_ids(out)
    assert sorted(ids) == sorted(valid_records(paths)) and len(ids) == len(set(ids)) == 160
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["docs"], manifest["errors"], manifest["skipped_shards"], manifest["unfinished"]) == (160, 2, done, [])
    errors = [json.loads(line) for line in (out / "errors.jsonl").open()]
    assert [(e["file"], e["line"]) for e in errors] == [(str(paths[1]), 3), (str(paths[1]), 5)]
    assert not list(out.glob("*.partial"))


def test_rerun_skips_overwrite_redoes_and_formats(tiny_ner, data_dir, tmp_path):
    paths = write_corpus(data_dir, tmp_path / "in", 30, 2, malformed=False)
    inputs, out = [str(p) for p in paths], tmp_path / "out"
    first = annotate(tiny_ner, inputs, out, format="jsonl", docbin=True, progress=False)
    assert (first.docs, first.shards, first.skipped) == (30, 2, 0) and first.entities > 0
    again = annotate(tiny_ner, inputs, out, format="jsonl", docbin=True, progress=False)
    assert (again.docs, again.skipped) == (0, 2)
    with pytest.raises(ShardMismatchError, match="format 'jsonl', this run has 'parquet'"):
        annotate(tiny_ner, inputs, out, progress=False)
    result = CliRunner().invoke(app, ["annotate", tiny_ner, *inputs, str(out), "--force", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "30 docs" in result.output and sorted(p.name for p in out.iterdir()) == ["_shards", "errors.jsonl", "manifest.json", "part-0.parquet", "part-1.parquet"]
    assert sorted(output_ids(out)) == sorted(valid_records(paths))

"""The Ray engine on a local Ray (2 CPUs) gives exactly the local engine's output."""
import json

import pyarrow.parquet as pq
import pytest

from spacy_msnr.annotate import annotate
from test_annotate_local import train_tiny_ner, valid_records, write_corpus

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_and_local_engines_write_the_same_records(local_ray, data_dir, tmp_path):
    model = str(train_tiny_ner(data_dir, tmp_path / "ner"))
    paths = write_corpus(data_dir, tmp_path / "in", 160, 4)
    long_doc = {"id": "long", "text": "\n\n".join(valid_records(paths[:1]).values())}  # about 60,000 characters
    with paths[3].open("a", encoding="utf8") as f:
        f.write(json.dumps(long_doc) + "\n")
    inputs = [str(tmp_path / "in")]
    options = {"batch_size": 16, "max_length": 2000, "chunk_size": 15, "progress": False}
    local = annotate(model, inputs, tmp_path / "local", engine="local", **options)
    remote = annotate(model, inputs, tmp_path / "ray", engine="ray", num_actors=2, **options)
    assert (remote.docs, remote.errors, remote.entities) == (local.docs, local.errors, local.entities) == (161, 2, local.entities)
    assert local.entities > 100
    for part in ("part-0", "part-1", "part-2", "part-3"):
        assert pq.read_table(tmp_path / "ray" / f"{part}.parquet").equals(pq.read_table(tmp_path / "local" / f"{part}.parquet"))
    assert (tmp_path / "ray" / "errors.jsonl").read_text() == (tmp_path / "local" / "errors.jsonl").read_text()
    (long_record,) = [r for r in pq.read_table(tmp_path / "ray" / "part-3.parquet").to_pylist() if r["id"] == "long"]
    assert long_record["length"] == len(long_doc["text"]) and len(long_record["entities"]) > 20
    assert all(long_doc["text"][e["start_char"] : e["end_char"]] == e["text"] for e in long_record["entities"])
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert (manifest["engine"], manifest["docs"], manifest["errors"], manifest["unfinished"]) == ("ray", 161, 2, [])

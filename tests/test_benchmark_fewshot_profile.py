"""benchmarks/fewshot_profile.py: one profiled update and scoring run of a tiny causal LM on the
CrossNER fixture slice give figures that add up."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fewshot_profile.py"


def test_profile_of_a_tiny_model(tiny_chat_model_dir, data_dir, tmp_path, one_torch_thread, monkeypatch):
    spec = importlib.util.spec_from_file_location("fewshot_profile_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "WORK", tmp_path / "docbins")
    out = tmp_path / "profile.json"
    result = module.main(["--base-model", str(tiny_chat_model_dir), "--data", str(data_dir / "crossner"), "--query", "3", "--query-split", "train",
                          "--batch-size", "2", "--max-new-tokens", "4", "--output", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["query"] == 3 and result["update_sentences"] == 2 and result["matmul_peak_gflop_per_s"] > 0
    for phase in ("update", "score"):
        figures = result["phases"][phase]
        assert figures["wall_s"] > 0 and 0 < figures["operator_share_of_wall"] <= 1.5
        assert figures["matmul_gflop"] > 0 and figures["top_ops"], phase
        shares = [op["share_of_op_time"] for op in figures["top_ops"]]
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0001
    assert set(result["peak_rss_mib"]) == {"start", "load_and_initialize", "update", "score"}
    assert result["phases"]["score"]["query_sentences_per_s"] == round(3 / result["phases"]["score"]["wall_s_unprofiled"], 3)

"""The data-following training budget: batches counted per epoch, steps and evaluations set from
them, the time cap ending spaCy's training loop, and the `train-budget` command."""
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training.loop import create_train_batches
from spacy.util import load_config, registry
from typer.testing import CliRunner

from spacy_msnr.budget import TIME_CAPPED, TimeCapped, batches_per_epoch, budget_config
from spacy_msnr.cli import app

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_docbin(path: Path, n_docs: int) -> Path:
    nlp = spacy.blank("en")
    DocBin(docs=[nlp(f"sentence number {i} about a disease") for i in range(n_docs)]).to_disk(path)
    return path


def sequence_config(train: Path, size: int = 2, eval_frequency: int = 4):
    """configs/ner_trf.cfg with a batcher of `size` docs (batch count = ceil(docs / size))."""
    config = load_config(ROOT / "configs" / "ner_trf.cfg", overrides={"paths.train": str(train), "paths.dev": str(train),
                         "training.eval_frequency": eval_frequency}, interpolate=False)
    config["training"]["batcher"] = {"@batchers": "spacy.batch_by_sequence.v1", "size": size, "get_length": None}
    return config


def test_time_capped_batches_until_the_cap_then_none():
    clock = FakeClock()
    capped = TimeCapped(lambda items: ([x] for x in items), max_seconds=10, clock=clock)
    seen = []
    for batch in capped(range(100)):
        seen += batch
        clock.now += 3  # each batch takes 3 s: batches start at 0, 3, 6, 9; the one at 12 is not handed out
    assert seen == [0, 1, 2, 3]
    assert list(capped(range(5))) == []  # every later epoch is empty


def test_time_capped_ends_right_after_an_evaluation_of_a_trained_step():
    """spaCy evaluates after steps 0, f, 2f, ... (the batches 1, f + 1, ...): past the cap the
    wrapper hands out batches until the last one was such a step, never stopping at step 0 alone."""
    clock = FakeClock()
    capped = TimeCapped(lambda items: ([x] for x in items), max_seconds=10, eval_frequency=4, clock=clock)
    seen = [x for batch in capped(range(100)) for x in batch if not setattr(clock, "now", clock.now + 3)]
    assert seen == list(range(5))  # the cap passes after batch 4 (step 3); step 4 = f runs and is evaluated
    early = TimeCapped(lambda items: ([x] for x in items), max_seconds=1, eval_frequency=5, clock=clock)
    clock.now = 0.0
    assert [x for b in early(range(100)) for x in b if not setattr(clock, "now", clock.now + 3)] == list(range(6))


def test_time_capped_without_a_cap_passes_everything_and_rejects_negative_settings():
    clock = FakeClock()
    capped = TimeCapped(lambda items: ([x] for x in items), max_seconds=0, clock=clock)
    clock.now = 1e9
    assert sum(len(b) for b in capped(range(7))) == 7
    with pytest.raises(ValueError, match="max_seconds"):
        TimeCapped(lambda items: items, max_seconds=-1)
    with pytest.raises(ValueError, match="eval_frequency"):
        TimeCapped(lambda items: items, max_seconds=1, eval_frequency=-2)


def test_batches_per_epoch_counts_the_configs_own_batches(tmp_path):
    train = make_docbin(tmp_path / "train.spacy", 7)
    assert batches_per_epoch(sequence_config(train, size=2)) == 4
    assert batches_per_epoch(sequence_config(train, size=7)) == 1


def test_budget_sets_steps_evaluations_epoch_bound_and_the_cap(tmp_path):
    train = make_docbin(tmp_path / "train.spacy", 10)
    budget = budget_config(sequence_config(train, size=2, eval_frequency=4), epochs=3, max_seconds=60)
    training = budget["config"]["training"]
    # 3 epochs = 15 steps; about 15 / 4 evaluations asked: 4 of 4 steps, so 16 steps, the last evaluated
    assert budget["batches_per_epoch"] == 5 and budget["max_steps"] == training["max_steps"] == 16
    assert training["eval_frequency"] == 4
    assert training["max_epochs"] == 5
    assert training["batcher"] == {"@batchers": TIME_CAPPED, "max_seconds": 60.0, "eval_frequency": "${training.eval_frequency}",
                                   "batcher": {"@batchers": "spacy.batch_by_sequence.v1", "size": 2, "get_length": None}}
    # the schedule still reads the step count, and the written config resolves
    interpolated = budget["config"].interpolate()
    assert interpolated["training"]["optimizer"]["learn_rate"]["total_steps"] == 16
    capped = registry.resolve({"b": interpolated["training"]["batcher"]})["b"]
    assert isinstance(capped, TimeCapped) and capped.eval_frequency == 4 and capped.max_seconds == 60
    # budgeting a budgeted config counts the inner batcher, not a wrapper of a wrapper
    again = budget_config(budget["config"], epochs=1.5, max_seconds=0)
    assert again["max_steps"] == 8 and again["config"]["training"]["batcher"]["batcher"]["@batchers"] == "spacy.batch_by_sequence.v1"
    fixed = budget_config(sequence_config(train), epochs=3, max_steps=7)
    assert fixed["max_steps"] == 7 and fixed["config"]["training"]["max_epochs"] == 3
    assert fixed["config"]["training"]["eval_frequency"] == 4  # evaluated as the config says
    short = budget_config(sequence_config(train, eval_frequency=100), epochs=3, max_steps=7)
    assert short["config"]["training"]["eval_frequency"] == 7  # ... and on its last step


def test_budget_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="paths.train.*missing.spacy"):
        budget_config(sequence_config(tmp_path / "missing.spacy"), epochs=1)
    with pytest.raises(ValueError, match="no documents"):
        budget_config(sequence_config(make_docbin(tmp_path / "empty.spacy", 0)), epochs=1)
    with pytest.raises(ValueError, match="epochs > 0 or max_steps > 0"):
        budget_config(sequence_config(make_docbin(tmp_path / "t.spacy", 3)), epochs=0)


def test_train_budget_command_writes_a_config_spacy_train_reads(tmp_path):
    train = make_docbin(tmp_path / "train.spacy", 9)
    out = tmp_path / "out" / "ner.cfg"
    result = CliRunner().invoke(app, ["train-budget", str(ROOT / "configs" / "ner_trf.cfg"), str(out), "--epochs", "2",
                                      "--max-seconds", "30", "--paths.train", str(train), "--paths.dev", str(train)])
    assert result.exit_code == 0, result.output
    written = load_config(out, interpolate=True)
    assert written["paths"]["train"] == str(train)
    assert written["training"]["max_steps"] == written["training"]["optimizer"]["learn_rate"]["total_steps"] == 2
    assert written["training"]["batcher"]["@batchers"] == TIME_CAPPED and written["training"]["batcher"]["max_seconds"] == 30
    bad = CliRunner().invoke(app, ["train-budget", str(ROOT / "configs" / "ner_trf.cfg"), str(tmp_path / "x.cfg"),
                                   "--paths.train", str(tmp_path / "nope.spacy")])
    assert bad.exit_code == 1 and "does not exist" in bad.output and not (tmp_path / "x.cfg").exists()

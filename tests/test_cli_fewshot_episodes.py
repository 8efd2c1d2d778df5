"""`fewshot-episodes`: episodic multi-source training data that spaCy's Corpus and the episode batcher read back."""
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training import Corpus
from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.corpus.episodes import ANNOTATED_LABELS, EPISODE_ID, instructions_of, label_counts, make_batch_by_episode


def convert(data_dir: Path, domain: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{domain}.spacy"
    result = CliRunner().invoke(app, ["convert", str(data_dir / "crossner" / domain / "train.txt"), str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_episodes_from_several_domains_round_trip_through_spacys_corpus(data_dir, tmp_path):
    sources = [convert(data_dir, domain, tmp_path) for domain in ("conll2003", "politics", "ai")]
    out = tmp_path / "episodes.spacy"
    result = CliRunner().invoke(app, ["fewshot-episodes", str(out), *map(str, sources), "--n-way", "3", "--k-shot", "2",
                                      "--instructions", "150", "--seed", "1"])
    assert result.exit_code == 0, result.output
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    episodes = sorted({d.user_data[EPISODE_ID] for d in docs})
    assert episodes == list(range(len(episodes))) and len(episodes) > 1
    assert instructions_of(docs) >= 150  # the last episode brought the count to the budget
    assert instructions_of([d for d in docs if d.user_data[EPISODE_ID] != episodes[-1]]) < 150
    for i in episodes:
        mine = [d for d in docs if d.user_data[EPISODE_ID] == i]
        labels = mine[0].user_data[ANNOTATED_LABELS]
        assert all(d.user_data[ANNOTATED_LABELS] == labels for d in mine) and len(labels) <= 3
        counts = label_counts(mine)
        assert set(counts) <= set(labels) and all(2 <= counts[label] <= 4 for label in labels)
    assert f"{len(episodes)} episodes" in " ".join(result.output.split())  # wasabi wraps long lines
    # spacy train reads it with spacy.Corpus.v1; the batcher keeps every update inside one episode
    examples = list(Corpus(out)(nlp))
    batches = list(make_batch_by_episode(size=3)(examples))
    assert sum(map(len, batches)) == len(docs)
    assert all(len({eg.reference.user_data[EPISODE_ID] for eg in b}) == 1 and len(b) <= 3 for b in batches)


def test_bad_sources_are_clear_errors(data_dir, tmp_path):
    politics = convert(data_dir, "politics", tmp_path)
    twice = CliRunner().invoke(app, ["fewshot-episodes", str(tmp_path / "o.spacy"), str(politics), str(politics), "--episodes", "1"])
    assert twice.exit_code == 1 and "two sources named 'politics'" in " ".join(twice.output.split())
    endless = CliRunner().invoke(app, ["fewshot-episodes", str(tmp_path / "o.spacy"), str(politics)])
    assert endless.exit_code == 1 and "--instructions or --episodes" in " ".join(endless.output.split())
    assert not (tmp_path / "o.spacy").exists()

"""The few-shot evaluation loop (spacy_msnr.fewshot.evaluate): query samples, summaries, sourced components."""
import pytest
import spacy
from pathlib import Path


def test_query_sample_is_fixed_ordered_and_bounded():
    from spacy_msnr.fewshot.evaluate import query_sample

    docs = list(range(100))
    a = query_sample(docs, 10, seed=3)
    assert a == query_sample(docs, 10, seed=3) and a != query_sample(docs, 10, seed=4)
    assert len(a) == 10 and a == sorted(a) and set(a) <= set(docs)
    assert query_sample(docs, None, 0) == docs and query_sample(docs, 500, 0) == docs
    with pytest.raises(ValueError, match="query-limit"):
        query_sample(docs, 0, 0)


def test_summary_averages_each_type_over_the_episodes_that_held_it():
    from spacy_msnr.fewshot.evaluate import per_type_table, summarize

    results = [
        {"f": 0.5, "labels": ["a", "b"], "per_type": {"a": {"p": 1.0, "r": 0.5, "f": 2 / 3}, "b": {"p": 0.2, "r": 0.2, "f": 0.2}}},
        {"f": 0.1, "labels": ["a", "c"], "per_type": {"a": {"p": 0.0, "r": 0.0, "f": 0.0}}},  # c never predicted nor in the query
    ]
    summary = summarize(results)
    assert summary["f_mean"] == pytest.approx(0.3) and summary["f_std"] == pytest.approx(0.28284, abs=1e-5)
    assert summary["per_type"]["a"] == pytest.approx({"p": 0.5, "r": 0.25, "f": 1 / 3, "episodes": 2})
    assert summary["per_type"]["b"] == pytest.approx({"p": 0.2, "r": 0.2, "f": 0.2, "episodes": 1})
    assert summary["per_type"]["c"] == pytest.approx({"p": 0.0, "r": 0.0, "f": 0.0, "episodes": 1})
    assert per_type_table(summary["per_type"])[1].split() == ["a", "50.00", "25.00", "33.33", "2"]


def test_a_sourced_ner_keeps_its_weights_learns_the_episode_types_and_is_scored_on_them(tmp_path):
    """configs/ner_cnn_source.cfg: spaCy's CNN ner trained on a source domain, then the episode."""
    from spacy.training import Example
    from spacy.util import load_config, load_model_from_config

    from spacy_msnr.fewshot.evaluate import prepare_pipeline, train_and_score
    from spacy_msnr.corpus.episodes import Episode

    root = Path(__file__).resolve().parent.parent
    nlp = load_model_from_config(load_config(root / "configs" / "ner_cnn.cfg"), auto_fill=True)
    text = "Anna met Bob in Rome ."
    gold = nlp.make_doc(text)
    gold.ents = [gold.char_span(0, 4, "PER"), gold.char_span(9, 12, "PER")]
    examples = [Example(nlp.make_doc(text), gold)]
    sgd = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=sgd)
    nlp.to_disk(tmp_path / "source")
    def embedding(pipeline):
        return next(node.get_param("E") for node in pipeline.get_pipe("tok2vec").model.walk() if node.has_param("E"))

    weights = embedding(nlp).copy()

    target = spacy.blank("en")("Obama visited Paris .")
    target.ents = [target.char_span(0, 5, "POL")]
    query = spacy.blank("en")("Anna met Obama in Rome .")  # the source ner may tag Anna as PER: not scored
    query.ents = [query.char_span(9, 14, "POL")]
    episode = Episode(labels=["POL"], support=[target], query=[query, target])
    config = load_config(root / "configs" / "ner_cnn_source.cfg", overrides={"paths.source": str(tmp_path / "source")})
    episode_nlp, support, _ = prepare_pipeline(config, episode)
    assert set(episode_nlp.get_pipe("ner").labels) == {"PER", "POL"}
    assert (embedding(episode_nlp) == weights).all()  # taken from the source, not initialized afresh
    result = train_and_score(config, episode, steps=3, batch_size=1)
    assert set(result["per_type"]) == {"POL"}  # the source type is not scored, whatever the ner predicts

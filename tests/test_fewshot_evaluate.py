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


class _Recorder:
    """A stand-in pipeline: records every update's batch, optimizer and dropout; its loss is the update's number."""

    def __init__(self):
        self.updates = []

    def update(self, batch, sgd=None, drop=0.0):
        self.updates.append((list(batch), sgd, drop))
        return {"loss": len(self.updates) + 0.123456}


def test_passes_keep_the_order_or_reshuffle_each_pass_from_the_last_or_the_first():
    import random
    from itertools import islice

    from spacy_msnr.fewshot.evaluate import passes, reshuffled

    items = list(range(7))
    assert list(islice(passes(items, 3), 6)) == [[0, 1, 2], [3, 4, 5], [6]] * 2
    rng, order, expected = random.Random(5), list(items), []
    for _ in range(3):  # the benchmarks' training: each pass a shuffle of the pass before
        order = rng.sample(order, len(order))
        expected += [order[i:i + 4] for i in range(0, 7, 4)]
    assert list(islice(passes(items, 4, reshuffled(5)), 6)) == expected
    rng = random.Random(5)  # the source-trained spaCy rows: each pass a fresh shuffle of the support set
    expected = [b for _ in range(3) for order in [rng.sample(items, 7)] for b in (order[:4], order[4:])]
    assert list(islice(passes(items, 4, reshuffled(5, from_start=True)), 6)) == expected
    with pytest.raises(ValueError, match="No examples"):
        next(passes([], 2))


def test_update_loop_stops_at_steps_without_drawing_another_batch(caplog):
    import logging

    from spacy_msnr.fewshot.evaluate import logger, update_loop

    drawn = []

    def batches():
        for i in range(100):
            drawn.append(i)
            yield [i]

    nlp, sgd = _Recorder(), object()
    with caplog.at_level(logging.INFO, logger=logger.name):
        trained = update_loop(nlp, batches(), 25, sgd, drop=0.2)
    assert drawn == list(range(25)) and [u[0] for u in nlp.updates] == [[i] for i in range(25)]
    assert all(u[1] is sgd and u[2] == 0.2 for u in nlp.updates)
    assert trained.updates == 25 and trained.losses == {"loss": 25.123456}
    logged = [int(r.getMessage().split()[1].split("/")[0]) for r in caplog.records]
    assert logged == [10, 20]  # every 10th of more than 20 updates
    record = trained.record()
    assert list(record) == ["train_s", "s_per_update", "cpu_s_per_update", "last_losses"]
    assert record["last_losses"] == {"loss": 25.1235} and record["s_per_update"] == pytest.approx(trained.seconds / 25)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger.name):
        assert update_loop(_Recorder(), batches(), 6, sgd, log_every=3).updates == 6
        assert update_loop(_Recorder(), batches(), 2, sgd).updates == 2  # every one of up to 20 updates
        assert update_loop(_Recorder(), batches(), 2, sgd, log_every=0).updates == 2
        quiet = update_loop(_Recorder(), batches(), 0, sgd)
    assert [r.getMessage().split()[1] for r in caplog.records] == ["3/6", "6/6", "1/2", "2/2"]
    assert quiet.updates == 0 and quiet.record()["s_per_update"] == 0.0 and len(drawn) == 35


def test_score_query_limits_predictions_to_the_labels_and_records_peak_rss():
    from spacy.scorer import get_ner_prf
    from spacy.training import Example

    from spacy_msnr.fewshot.evaluate import score_query

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PER", "pattern": "Anna"}, {"label": "LOC", "pattern": "Rome"},
                                               {"label": "ORG", "pattern": "Acme"}])
    gold = [nlp.make_doc(t) for t in ("Anna met Bob in Rome .", "Acme hired Anna .")]
    gold[0].ents = [gold[0].char_span(0, 4, "PER"), gold[0].char_span(9, 12, "PER")]
    gold[1].ents = [gold[1].char_span(11, 15, "PER")]
    every = score_query(nlp, gold)
    expected = get_ner_prf([Example(nlp(d.text), d) for d in gold])
    assert (every.p, every.r, every.f) == (expected["ents_p"], expected["ents_r"], expected["ents_f"])
    assert every.p == pytest.approx(0.5) and every.peak_mib == 0.0 and every.sentences == 2
    limited = score_query(nlp, gold, ["PER"], peak_rss=True)
    assert (limited.p, limited.r) == (1.0, pytest.approx(2 / 3)) and set(limited.per_type) == {"PER"}
    assert limited.seconds >= limited.predict_seconds > 0
    record = limited.record()
    assert list(record) == ["f", "p", "r", "score_s", "cpu_sents_per_s", "sents_per_s", "peak_mib"]
    assert record["peak_mib"] > 0 and record["sents_per_s"] == pytest.approx(2 / limited.seconds)


def test_train_support_seeds_initializes_and_uses_a_fresh_adam(monkeypatch):
    from spacy.training import Example

    from spacy_msnr.fewshot import evaluate

    def pipeline():
        nlp = spacy.blank("en")
        nlp.add_pipe("ner")
        doc = nlp.make_doc("Anna met Bob in Rome .")
        doc.ents = [doc.char_span(0, 4, "PER"), doc.char_span(16, 20, "LOC")]
        return nlp, [Example(nlp.make_doc(doc.text), doc) for _ in range(3)]

    runs = []
    for _ in range(2):
        nlp, examples = pipeline()
        runs.append(evaluate.train_support(nlp, examples, 4, 0.01, 2, seed=3))
        assert set(nlp.get_pipe("ner").labels) == {"PER", "LOC"}
    assert runs[0].updates == 4 and runs[0].losses == runs[1].losses
    seen = {}
    monkeypatch.setattr(evaluate, "update_loop", lambda nlp, batches, steps, sgd, log_every: seen.update(
        sgd=sgd, batches=batches, log_every=log_every))
    nlp, examples = pipeline()
    given = [examples[:1], examples[1:]]
    evaluate.train_support(nlp, examples, 2, 0.02, 8, seed=0, log_every=5, batches=given)
    assert seen["sgd"].learn_rate == 0.02 and seen["sgd"].L2 == 0.0 and seen["batches"] is given and seen["log_every"] == 5


def test_fewshot_pipeline_holds_the_benchmark_settings_without_loading_the_model():
    from spacy_msnr.fewshot.evaluate import MAX_DEMONSTRATIONS, fewshot_pipeline

    nlp = fewshot_pipeline(["b", "a"], "no/such/model", lora_r=4, max_new_tokens=12, train_batch_size=2,
                           negative_rate=0.5, demonstrations=MAX_DEMONSTRATIONS, adversarial={"epsilon": 0.0})
    cfg = nlp.config["components"]["fewshot_ner"]
    assert cfg["labels"] == {"b": "b", "a": "a"} and cfg["demonstrations"] == 1000 and cfg["batch_size"] == 32
    assert (cfg["max_new_tokens"], cfg["train_batch_size"], cfg["negative_rate"]) == (12, 2, 0.5)
    model = cfg["model"]
    assert model["base_model"] == "no/such/model" and (model["lora"]["r"], model["lora"]["alpha"]) == (4, 8)
    assert model["dtype"] == "fp32" and model["adversarial"] == {"epsilon": 0.0}
    described = fewshot_pipeline({"a": "an a"}, "m", contrastive={"weight": 0.0})
    assert described.config["components"]["fewshot_ner"]["labels"] == {"a": "an a"}
    assert described.config["components"]["fewshot_ner"]["model"]["contrastive"]["weight"] == 0.0


def test_fixed_query_episodes_share_one_query_sample_and_draw_types_with_2k_mentions(data_dir, tmp_path):
    from spacy_msnr.corpus.episodes import label_counts, sample_episodes
    from spacy_msnr.corpus.iob import iob_split
    from spacy_msnr.fewshot.evaluate import fixed_query_episodes, query_sample

    vocab = spacy.blank("en").vocab
    docs = iob_split(data_dir / "crossner", "politics", "train", vocab, tmp_path)
    assert (tmp_path / "politics-train.spacy").exists()
    (tmp_path / "other").mkdir()
    copy = tmp_path / "other" / "politics"
    copy.mkdir()
    (copy / "train.txt").write_text("")  # the cache is read, not this file
    assert [d.text for d in iob_split(tmp_path / "other", "politics", "train", vocab, tmp_path)] == [d.text for d in docs]
    train, test = docs[:70], docs[70:]
    episodes = fixed_query_episodes(train, test, 3, 2, 2, 20, seed=1)
    types = sorted(t for t, n in label_counts(train).items() if n >= 4)
    expected = sample_episodes(train, query_sample(test, 20, 1), 3, 2, 2, seed=1, labels=types)
    assert [e.labels for e in episodes] == [e.labels for e in expected] and set(episodes[0].labels) <= set(types)
    assert [d.text for d in episodes[0].query] == [d.text for d in episodes[1].query] == [d.text for d in query_sample(test, 20, 1)]

"""`python -m spacy_msnr fewshot-eval`: train a pipeline on N-way K-shot support sets and score
the query sets, reporting mean and spread of micro-F1 over episodes."""
import json
from pathlib import Path
from typing import Optional

import spacy
import typer
from spacy.cli._util import parse_config_overrides, setup_gpu
from spacy.util import load_config
from wasabi import msg

from ..corpus.episodes import load_docs, sample_episodes
from ._app import GPU_ID_OPTION, OVERRIDES_CONTEXT, app, show_log


@app.command("fewshot-eval", context_settings=OVERRIDES_CONTEXT)
def fewshot_eval_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Pipeline config (e.g. configs/fewshot.cfg)", exists=True, dir_okay=False),
    support_path: Path = typer.Argument(..., help="DocBin to sample support sets from", exists=True, dir_okay=False),
    query_path: Optional[Path] = typer.Argument(None, help="DocBin of query sentences (default: sample from the support DocBin)"),
    n_way: int = typer.Option(5, "--n-way", help="Entity types per episode"),
    k_shot: int = typer.Option(5, "--k-shot", help="Mentions per type in the support set (K..2K, greedy)"),
    query_shots: Optional[int] = typer.Option(None, "--query-shots", help="Sample K-shot query sets instead of using all query sentences"),
    query_limit: Optional[int] = typer.Option(None, "--query-limit", help="Score a fixed seeded sample of this many query sentences (the same for every episode)"),
    episodes: int = typer.Option(3, "--episodes", help="Number of episodes"),
    steps: int = typer.Option(100, "--steps", help="Training updates per episode"),
    batch_size: int = typer.Option(8, "--batch-size", help="Support sentences per update"),
    seed: int = typer.Option(0, "--seed", help="Seed of the episode sampler and of training"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write per-episode results and the summary as JSON"),
    gpu_id: int = GPU_ID_OPTION,
) -> None:
    """Few-shot evaluation over N-way K-shot episodes; config overrides as in `spacy train`."""
    from ..fewshot.evaluate import logger, per_type_table, query_sample, summarize, train_and_score

    show_log(logger)
    overrides = parse_config_overrides(ctx.args)
    setup_gpu(gpu_id)
    config = load_config(config_path, overrides=overrides, interpolate=False)
    vocab = spacy.blank(config["nlp"]["lang"]).vocab
    support_docs = load_docs(support_path, vocab)
    query_docs = query_sample(load_docs(query_path, vocab), query_limit, seed) if query_path else None
    if query_docs is None and query_shots is None:
        query_shots = k_shot
    sampled = sample_episodes(support_docs, query_docs, n_way, k_shot, episodes, seed=seed, query_shots=query_shots)
    results = []
    for i, episode in enumerate(sampled):
        msg.info(f"Episode {i + 1}/{len(sampled)}: {episode.labels}, {len(episode.support)} support / {len(episode.query)} query sentences")
        result = train_and_score(config, episode, steps, batch_size, seed + i)
        msg.text(f"  F1 {100 * result['f']:.2f}  (P {100 * result['p']:.2f}, R {100 * result['r']:.2f}, "
                 f"{result['sentences_per_second']:.1f} query sentences/s)")
        results.append(result)
    summary = summarize(results)
    msg.good(f"micro-F1 over {summary['episodes']} episodes: {100 * summary['f_mean']:.2f} ± {100 * summary['f_std']:.2f} "
             f"(min {100 * summary['f_min']:.2f}, max {100 * summary['f_max']:.2f})")
    print("\n".join(per_type_table(summary["per_type"])), flush=True)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"summary": summary, "episodes": results, "n_way": n_way, "k_shot": k_shot}, indent=2))
        msg.good(f"Wrote {output}")

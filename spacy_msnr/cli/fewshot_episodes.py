"""`python -m spacy_msnr fewshot-episodes OUTPUT SOURCE...`: episodic multi-source training data for fewshot_ner."""
from pathlib import Path
from typing import List

import typer
from wasabi import msg

from ..util import atomic_write_bytes
from ._app import app, user_errors


@app.command("fewshot-episodes")
def fewshot_episodes_cli(
    output: Path = typer.Argument(..., help="The .spacy file to write (its Docs keep their episode in user_data)"),
    sources: List[Path] = typer.Argument(..., help="Source corpora, one domain each (.spacy DocBins with gold entities)", exists=True, dir_okay=False),
    n_way: int = typer.Option(5, "--n-way", help="Entity types per episode (fewer where a domain has fewer)"),
    k_shot: int = typer.Option(5, "--k-shot", help="Mentions per type in an episode's support set (K to 2K, greedy)"),
    instructions: int = typer.Option(0, "--instructions", help="Stop after the episode that brings the (sentence, type) instructions to this many"),
    episodes: int = typer.Option(0, "--episodes", help="... or after this many episodes (0: no such limit)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Draw N-way K-shot episodes from several source domains, as CLLMFS trains (each episode from
    one domain drawn at random, its Docs annotated for its types only), and write their support
    sentences, episode after episode, as one DocBin. Train on it with `spacy train
    configs/fewshot.cfg --paths.train OUTPUT --paths.dev DEV.spacy --training.batcher '{"@batchers":
    "spacy_msnr.batch_by_episode.v1", "size": 8}'`: every update then holds one episode's sentences
    and contrasts its types."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from ..corpus.episodes import instructions_of, load_docs, source_episodes, take_episodes

    if instructions <= 0 and episodes <= 0:
        msg.fail("Give --instructions or --episodes: the episodes are drawn without end", exits=1)
    with user_errors():
        vocab = Vocab()
        domains = {}
        for path in sources:
            if path.stem in domains:
                raise ValueError(f"{path}: two sources named {path.stem!r}; the file name names the domain")
            domains[path.stem] = [doc for doc in load_docs(path, vocab) if doc.ents]
        taken = take_episodes(source_episodes(domains, n_way, k_shot, seed=seed), instructions, episodes)
        docs = [doc for episode in taken for doc in episode.support]
        atomic_write_bytes(output, DocBin(docs=docs, store_user_data=True).to_bytes())
    per_domain = {name: sum(ep.domain == name for ep in taken) for name in domains}
    msg.good(f"{output}: {len(taken)} episodes ({', '.join(f'{n} {c}' for n, c in per_domain.items())}), "
             f"{len(docs)} sentences, {instructions_of(docs)} instructions")

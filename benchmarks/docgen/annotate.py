"""Tables of docs/annotate.md: `annotate` beside `nlp.pipe` and `spacy apply`, CLI start-up."""
import statistics

from .sources import RESULTS, result, Sources
from .format import note, source_link, table
from .blocks import block


# annotate and the command line ----------------------------------------------------------------------
@block("annotate-scaling")
def annotate_scaling(src: Sources, arg: str, prefix: str) -> str:
    """`annotate-scaling:<label>`: benchmarks/annotate_scaling.py's rows for one pipeline."""
    name = f"annotate_scaling_{arg}.json"
    data = src.json(result(f"{name}"))
    rows = [
        [f"`{r['setup']}`", f"{r['seconds']:.1f}", f"{r['docs_per_s']:.1f}", f"{r['x_plain']:.2f}", ", ".join(str(m) for m in r["peak_rss_mib"]) or "–"]
        for r in data["rows"]
    ]
    goals = data["goals"]
    startup = next((r["python_startup_s"] for r in data["rows"] if "python_startup_s" in r), None)
    return table(["setup", "seconds", "docs/s", "x plain nlp.pipe", "peak RSS per worker (MiB)"], rows, "lrrrr") + note(
        f"{data['n_docs']:,} PubMed abstracts (the 2,000 shared ones, then again under new ids) in {data['n_shards']} shards, "
        f"read in chunks of {data['chunk_size']}, batch size {data['batch_size']}. Pipeline: {data['pipeline']}.",
        f"Machine: the {data['cpus']}-core CPU workplace machine, no GPU, 1-min load average {data['load_before']} before and "
        f"{data['load_after']} after; one run; OMP_NUM_THREADS={data['omp_num_threads']} (one torch/BLAS thread a process or actor).",
        "Every row is end to end (pipeline load, reading, writing: Parquet for annotate, a DocBin for `spacy apply`) after one untimed load;",
        f"the Ray rows run on a Ray started beforehand (`ray.init` took {data['ray_init_s']} s, not in the rows);",
        f"`spacy apply` rows include its Python start-up ({startup} s alone)." if startup is not None else "",
        "Peak RSS is sampled twice a second per worker: the process itself in one-process rows, each worker process or Ray actor otherwise.",
        f"Same entities in every row: {'yes' if data['same_entities'] else 'NO'}.",
        f"Goals: ray 2 actors / 1 actor = **{goals['ray_2_over_1']:.2f}** (goal at least 1.6); annotate local 1 process / plain nlp.pipe = "
        f"**{goals['annotate_local_1_over_plain']:.2f}**, ray 1 actor / plain = **{goals['annotate_ray_1_over_plain']:.2f}** (goal at least 0.90).",
        f"Source: {source_link(name, prefix)} (`{data['command']}`).",
    )


@block("cli-startup")
def cli_startup(src: Sources, arg: str, prefix: str) -> str:
    data = src.json(result("cli_startup.json"))
    goal = f"{data['goal']:.2f}"
    rows = [[f"`python -m {name}`", f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}", len(values)]
            for name, values in data["seconds"].items()]
    return table(["command", "median s", "min s", "max s", "runs"], rows, "lrrrr") + note(
        f"Ratio of the medians, `spacy_msnr` / `spacy`: **{data['ratio']:.2f}** (goal: at most {goal}).",
        f"Runs alternate between the two commands after one warm-up each; Python {data['python']}, {data['machine']}.",
        f"Source: {source_link('cli_startup.json', prefix)} (`python benchmarks/cli_startup.py --output {RESULTS}/cli_startup.json`).",
    )



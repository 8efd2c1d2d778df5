"""How long `python -m spacy_msnr --help` takes beside `python -m spacy --help`, measured side by
side (alternating runs) on this machine; prints both medians and their ratio, writes JSON.

    python benchmarks/cli_startup.py --runs 7 --output benchmarks/results/cli/cli_startup.json
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

#: The most `spacy_msnr --help` may take, as a multiple of `spacy --help` (the issue's goal).
GOAL = 1.20
COMMANDS = {"spacy --help": ["-m", "spacy", "--help"], "spacy_msnr --help": ["-m", "spacy_msnr", "--help"]}


def timed(args: List[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the file cache once
        timed(argv)
    seconds: Dict[str, List[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            seconds[name].append(timed(argv))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = medians["spacy_msnr --help"] / medians["spacy --help"]
    for name, values in seconds.items():
        print(f"{name:<20} median {medians[name]:.2f} s (min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)")
    print(f"ratio spacy_msnr / spacy: {ratio:.2f} (goal <= {GOAL:.2f})")
    result = {"runs": args.runs, "seconds": seconds, "medians": medians, "ratio": ratio, "goal": GOAL,
              "python": platform.python_version(), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores"}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

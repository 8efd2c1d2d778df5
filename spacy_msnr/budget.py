"""A `spacy train` budget that follows the data: epochs of the config's own batches, under a time cap.

spaCy's `warmup_linear.v1` schedule needs its `total_steps` before training starts, and the
configs tie it to `training.max_steps`. `budget_config` counts the batches one epoch of the
config's train corpus makes with the config's batcher, sets `training.max_steps` to that count
times the epochs (so the schedule decays over the real run), and wraps the batcher in
`spacy_msnr.time_capped.v1`, which stops handing out batches at the first evaluation after the
time cap: the training loop then runs out of data and ends normally (model-last saved, model-best
the best of the evaluations, the last of them on the last update). Batches per epoch are counted
on the corpus in file order; spaCy shuffles every epoch, which can change a batcher's count by a
few percent, so "epochs" is approximate.
"""
import copy
import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, TypeVar

from spacy.util import registry
from thinc.api import Config

T = TypeVar("T")
Batcher = Callable[[Iterable[T]], Iterable[List[T]]]

#: The registered name of the time-capped batcher wrapper.
TIME_CAPPED = "spacy_msnr.time_capped.v1"


class TimeCapped:
    """Wrap a batcher: batches as it makes them until `max_seconds` after the first batch was
    asked for, and then until spaCy has just evaluated a trained step (`eval_frequency`: spaCy
    evaluates after step 0, f, 2f, ...; 0: stop at the cap), then none: every later epoch is empty,
    so spaCy's loop ends at `max_epochs` with its last updates scored."""

    def __init__(self, batcher: Batcher, max_seconds: float, eval_frequency: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        if max_seconds < 0 or eval_frequency < 0:
            raise ValueError(f"{TIME_CAPPED}: max_seconds and eval_frequency must be >= 0 (0: no cap / stop at the cap), "
                             f"got {max_seconds} and {eval_frequency}")
        self.batcher = batcher
        self.max_seconds = max_seconds
        self.eval_frequency = eval_frequency
        self.clock = clock
        self.started: Optional[float] = None
        self.handed = 0  # batches handed out so far: the last one was spaCy's step handed - 1

    def expired(self) -> bool:
        return bool(self.max_seconds) and self.started is not None and self.clock() - self.started >= self.max_seconds

    def _just_evaluated(self) -> bool:
        f = self.eval_frequency
        return not f or (self.handed > 1 and (self.handed - 1) % f == 0)

    def __call__(self, items: Iterable[T]) -> Iterator[List[T]]:
        if self.started is None:
            self.started = self.clock()
        for batch in self.batcher(items):
            if self.expired() and self._just_evaluated():
                return
            self.handed += 1
            yield batch


@registry.batchers(TIME_CAPPED)
def make_time_capped(batcher: Batcher, max_seconds: float = 0.0, eval_frequency: int = 0) -> TimeCapped:
    """The batcher's batches until `max_seconds` (wall clock, from the first batch; 0: no cap) and
    the next evaluation of `eval_frequency` after it (0: stop at the cap)."""
    return TimeCapped(batcher, max_seconds, eval_frequency)


def batches_per_epoch(config: Config) -> int:
    """How many batches the config's `[training.batcher]` makes from one pass over its train corpus
    (`[training] train_corpus`), read with a blank pipeline of the config's language."""
    import spacy
    from spacy.util import resolve_dot_names

    config = config.interpolate()
    name = config["training"]["train_corpus"]
    path = config.get("paths", {}).get("train")
    if path and not Path(path).exists():
        raise FileNotFoundError(f"the train corpus ({name}, paths.train) does not exist: {path}")
    nlp = spacy.blank(config["nlp"]["lang"])
    (corpus,) = resolve_dot_names(config, [name])
    examples = list(corpus(nlp))
    if not examples:
        raise ValueError(f"the train corpus ({name}, paths.train = {path}) has no documents")
    batcher = registry.resolve({"batcher": config["training"]["batcher"]})["batcher"]
    return sum(1 for _ in batcher(examples))


def budget_config(config: Config, epochs: float, max_seconds: float = 0.0, max_steps: int = 0) -> Dict:
    """`config` (not interpolated) with `training.max_steps` = epochs x the batches of an epoch,
    rounded up to a whole number of evaluations (about as many as its `eval_frequency` gave, the
    last on the last step), or exactly `max_steps` when that is > 0 (`eval_frequency` lowered to it
    when larger, so model-best is never the untrained step 0 alone); `training.max_epochs` one more
    than the steps need (a bound: the step count ends the run first); and its batcher wrapped in
    `spacy_msnr.time_capped.v1` (`max_seconds`; 0: no cap; stopping at an evaluation).
    Returns {"config", "batches_per_epoch", "max_steps"}."""
    if epochs <= 0 and max_steps <= 0:
        raise ValueError(f"give epochs > 0 or max_steps > 0 (got epochs={epochs}, max_steps={max_steps})")
    config = copy.deepcopy(config)
    batcher = config["training"]["batcher"]
    if batcher.get("@batchers") == TIME_CAPPED:  # budgeting a budgeted config: re-cap its inner batcher
        batcher = batcher["batcher"]
    config["training"]["batcher"] = batcher
    per_epoch = batches_per_epoch(config)
    if max_steps > 0:  # the user's exact count, evaluated as the config says, and at least at its end
        steps = max_steps
        config["training"]["eval_frequency"] = min(int(config["training"]["eval_frequency"]), steps)
    else:
        # spaCy evaluates only at multiples of eval_frequency: about as many evaluations as the
        # config asks for, the last on the last step (steps rounded up by at most n_evals - 1).
        steps = max(1, math.ceil(epochs * per_epoch))
        n_evals = max(1, round(steps / max(1, int(config["training"]["eval_frequency"]))))
        frequency = math.ceil(steps / n_evals)
        steps = n_evals * frequency
        config["training"]["eval_frequency"] = frequency
    config["training"]["max_steps"] = steps
    config["training"]["max_epochs"] = math.ceil(steps / per_epoch) + 1
    config["training"]["batcher"] = {"@batchers": TIME_CAPPED, "max_seconds": float(max_seconds),
                                     "eval_frequency": "${training.eval_frequency}", "batcher": batcher}
    return {"config": config, "batches_per_epoch": per_epoch, "max_steps": steps}

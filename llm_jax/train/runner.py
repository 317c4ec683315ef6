"""The step loop shared by pretraining and fine-tuning: steps, logging, evaluation, checkpoints, preemption.

It knows nothing of models or objectives: it is handed a jitted `train_step`, a `batch_fn(step)` giving this
process's slice of the global batch, and callbacks. What it guarantees:

* metrics are fetched from the device only at log steps (no host sync inside the step stream);
* a checkpoint is written every `checkpoint_every` steps and at the end, so a crash loses at most the steps
  since the last one;
* SIGTERM / SIGINT finish the current step, write a checkpoint and return `preempted=True` (every process
  agrees on the step to stop at);
* `max_consecutive_skips` non-finite steps in a row stop the run with the last good checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from llm_jax.train.checkpoint import Checkpointer
from llm_jax.train.metrics import MetricWriter, format_row

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopResult:
    state: Any
    end_step: int
    preempted: bool
    last_eval: dict[str, float]
    stopped_early: bool = False


class PreemptionFlag:
    """Set by SIGTERM/SIGINT while installed; the previous handlers come back on exit."""

    def __init__(self):
        self.signal: int | None = None

    def _handle(self, signum, frame):
        del frame
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        self.signal = signum
        log.warning("Received %s: finishing the current step, then writing a checkpoint.", signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def agreed(self) -> bool:
        """True when any process was signalled (all processes take the same decision at the same step)."""
        flag = self.signal is not None
        if jax.process_count() == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def run_loop(
    *,
    state: Any,
    train_step: Callable,
    batch_fn: Callable[[int], dict[str, jax.Array]],
    start_step: int,
    end_step: int,
    total_steps: int,
    log_every: int,
    checkpointer: Checkpointer,
    checkpoint_every: int,
    meta_fn: Callable[[int], dict[str, Any]],
    writer: MetricWriter,
    tokens_per_step: int,
    eval_every: int = 0,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    on_eval: Callable[[int, dict[str, float], Any], bool] | None = None,
    max_consecutive_skips: int = 5,
    progress: bool = True,
    desc: str = "train",
    postfix_keys: tuple[str, ...] = ("loss", "tokens_per_s"),
    derive: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> LoopResult:
    """Runs steps `start_step+1 … end_step` of a `total_steps` schedule.

    Args:
      evaluate: `evaluate(state) -> metrics` (already prefixed, e.g. `eval_loss`), run every `eval_every` steps
        and at the end; the metrics are written at that step.
      on_eval: `on_eval(step, metrics, state) -> stop` — e.g. keep the best checkpoint, stop early.
      derive: `derive(row) -> more metrics` computed from each logged row (the objective's `derived_metrics`).
    """
    bar = None
    if progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True)
    pending: list[dict[str, jax.Array]] = []
    consecutive_skips = 0
    steps_since_log = 0
    t_log = time.time()
    last_eval: dict[str, float] = {}
    s = start_step
    stopped_early = preempted = False
    flag = PreemptionFlag()
    with flag.installed():
        while s < end_step:
            state, metrics = train_step(state, batch_fn(s))
            pending.append(metrics)
            s += 1
            steps_since_log += 1
            if bar is not None:
                bar.update(1)
            preempted = flag.agreed()
            last = s == end_step or preempted
            # Step 1 is logged too: the loss before any learning, the baseline a curve is read against.
            if s % log_every == 0 or last or s == 1:
                host = jax.device_get(pending)
                elapsed = time.time() - t_log
                for m in host:
                    consecutive_skips = consecutive_skips + 1 if m["skipped"] else 0
                row = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k not in ("skipped", "learning_rate")}
                if derive is not None:
                    row.update(derive(row))
                row["learning_rate"] = float(host[-1]["learning_rate"])
                row["skipped"] = float(sum(m["skipped"] for m in host))
                row["tokens_per_s"] = tokens_per_step * steps_since_log / max(elapsed, 1e-9)
                row["step_time_s"] = elapsed / steps_since_log
                writer.write(s, row)
                if bar is not None:
                    bar.set_postfix_str(format_row(row, postfix_keys))
                pending, steps_since_log, t_log = [], 0, time.time()
                if consecutive_skips >= max_consecutive_skips:
                    if bar is not None:
                        bar.close()
                    checkpointer.close()
                    good = checkpointer.steps()
                    raise FloatingPointError(
                        f"{consecutive_skips} consecutive steps had a non-finite loss or gradient (last at step {s}); "
                        f"nothing was written for them and the newest good checkpoint "
                        f"({'step ' + str(good[-1]) if good else 'none yet'}) in {checkpointer.directory} is intact. "
                        "Lower optim.learning_rate or check the data, then run again to resume.")
            if evaluate is not None and eval_every and (s % eval_every == 0 or last):
                last_eval = evaluate(state)
                writer.write(s, last_eval)
                t_log = time.time()  # evaluation time is not training throughput
                if on_eval is not None and on_eval(s, last_eval, state):
                    stopped_early = True
                    last = True
            if (checkpoint_every and s % checkpoint_every == 0) or last:
                checkpointer.save(s, state, meta_fn(s))
            if stopped_early or preempted:
                break
    if bar is not None:
        bar.close()
    checkpointer.wait()
    return LoopResult(state=state, end_step=s, preempted=preempted, last_eval=last_eval, stopped_early=stopped_early)

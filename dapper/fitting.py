"""One training loop for the small helper networks (oracles, annotators, perceptual network, encoder,
classifiers): a fixed number of steps, so every shipped model is reproducible step for step on any
machine, with its progress in a tqdm bar.

A trainer gives :func:`fit` a ``loss_fn(step) -> loss`` that draws its own batch (from its own
seeded generator), the optimiser and, optionally, the learning rate of every step.
:class:`EpochSampler` yields the batch indices of shuffled epochs in the order a plain
``for epoch: perm = randperm(n)`` loop would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

__all__ = ["FitLog", "fit", "EpochSampler", "one_cycle", "warmup_cosine"]


@dataclass
class FitLog:
    """What a :func:`fit` did: steps run, the loss smoothed over about 50 steps at the end, CPU
    and wall seconds of the loop, and ``(step, smoothed loss)`` every ``log_every`` steps."""

    steps: int
    final_loss: float
    cpu_seconds: float
    wall_seconds: float
    history: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"steps_run": self.steps, "final_loss": round(self.final_loss, 5),
                "train_cpu_seconds": round(self.cpu_seconds, 1), "train_wall_seconds": round(self.wall_seconds, 1)}


def warmup_cosine(peak: float, steps: int, warmup: float = 0.05) -> Callable[[int], float]:
    """Learning rate of step ``i``: linear warm-up over ``warmup`` of the steps (from 2% of the
    peak), then cosine decay to 0."""

    def lr(i: int) -> float:
        frac = i / max(steps, 1)
        if frac < warmup:
            return peak * max(frac / warmup, 0.02)
        return peak * 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))

    return lr


def one_cycle(optimizer, peak, steps: int, pct_start: float = 0.15):
    """torch's OneCycleLR over ``steps`` (stepped by :func:`fit` after every optimiser step);
    ``peak``: one learning rate or one per parameter group. OneCycleLR divides by zero when its
    warm-up is exactly one step (10 steps at 10%); that case warms up over 1.5 steps."""
    steps = max(steps, 1)
    if abs(pct_start * steps - 1.0) < 1e-9:
        pct_start *= 1.5
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps, pct_start=pct_start)


class EpochSampler:
    """Batch indices over ``n`` items, ``batch`` at a time, reshuffled (with ``generator``) at the
    start of every epoch; the last incomplete batch of an epoch is dropped. ``sampler(step)``
    returns the indices of that step (steps must be asked for in order)."""

    def __init__(self, n: int, batch: int, generator: torch.Generator):
        if batch > n:
            raise ValueError(f"batch {batch} is larger than the {n} items")
        self.n, self.batch, self.generator = n, batch, generator
        self.per_epoch = n // batch
        self.perm = None
        self.next_step = 0

    def steps(self, epochs: int) -> int:
        return epochs * self.per_epoch

    def __call__(self, step: int) -> torch.Tensor:
        if step != self.next_step:
            raise ValueError(f"asked for step {step}, expected {self.next_step}")
        self.next_step += 1
        k = step % self.per_epoch
        if k == 0:
            self.perm = torch.randperm(self.n, generator=self.generator)
        return self.perm[k * self.batch:(k + 1) * self.batch]


def fit(loss_fn: Callable[[int], torch.Tensor], optimizer, steps: int, lr: Callable[[int], float] | None = None,
        scheduler=None, desc: str = "fit", progress: bool = True, log_every: int = 100,
        on_step: Callable[[int, float], None] | None = None) -> FitLog:
    """Run exactly ``steps`` optimiser steps: for each, set the learning rate ``lr(step)`` (when
    given), compute ``loss_fn(step)``, back-propagate, step the optimiser, then ``scheduler``
    (when given). ``on_step(step, loss)`` is called after each step. The smoothed loss shows in a
    tqdm bar (``desc``); the models stay in whatever mode the trainer set."""
    cpu0, wall0 = time.process_time(), time.time()
    running, history = None, []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress, mininterval=2.0)
    try:
        for step in range(steps):
            if lr is not None:
                rate = lr(step)
                for group in optimizer.param_groups:
                    group["lr"] = rate
            loss = loss_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            value = float(loss.detach())
            running = value if running is None else 0.98 * running + 0.02 * value
            if on_step is not None:
                on_step(step, value)
            if (step + 1) % log_every == 0 or step + 1 == steps:
                history.append((step + 1, running))
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    return FitLog(steps, float("nan") if running is None else running, time.process_time() - cpu0,
                  time.time() - wall0, history)

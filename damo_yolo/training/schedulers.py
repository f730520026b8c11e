"""The learning-rate schedule of the DAMO-YOLO recipe as mmengine ``param_scheduler`` entries.

    param_scheduler = [
        dict(type="QuadraticWarmupFromZeroLR", begin=0, end=warmup_epochs, convert_to_iter_based=True),
        dict(type="CosineToMinLR", begin=warmup_epochs, end=max_epochs - no_aug_epochs, min_ratio=0.05,
             convert_to_iter_based=True),
        dict(type="FlatTailLR", begin=max_epochs - no_aug_epochs, end=max_epochs, factor=0.05,
             convert_to_iter_based=True),
    ]

Each scheduler sets the rate of every iteration of its range in closed form from the group's initial rate
(step t of a range of T steps): warm-up ``(t/T)²`` from zero, cosine ``r + (1 − r)·(1 + cos(π·t/T))/2`` down
to ratio r, then the constant tail ``r``, as the reference's ``cosine`` schedule computes it per iteration
(damo/apis/detector_trainer.py). mmengine's own chainable ``QuadraticWarmupLR`` starts at 1/T² rather
than 0, and its chainable cosine multiplies ratios over 10⁵ steps; the closed form keeps every iteration
equal to the reference's.
"""
from __future__ import annotations

import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


class _ClosedFormScheduler(_ParamScheduler):
    """Sets ``initial value × factor(step, steps in range)`` at every step of [begin, end). An empty range
    (``warmup_epochs=0``, ``no_aug_epochs=0``) changes nothing."""

    def __init__(self, optimizer, param_name: str, begin: int = 0, end: int = INF, **kwargs):
        self.empty = end <= begin
        super().__init__(optimizer, param_name, begin=begin, end=begin + 1 if self.empty else end, **kwargs)

    def factor(self, step: int, span: int) -> float:
        raise NotImplementedError

    def _get_value(self) -> list[float]:
        if self.empty:
            return [group[self.param_name] for group in self.optimizer.param_groups]
        factor = self.factor(self.last_step, self.end - self.begin)
        return [base * factor for base in self.base_values]

    @classmethod
    def build_iter_from_epoch(cls, *args, begin=0, end=INF, by_epoch=True, epoch_length=None, **kwargs):
        """An iteration-based instance of an epoch-based config (``convert_to_iter_based=True``)."""
        if not by_epoch or not epoch_length:
            raise ValueError("convert_to_iter_based needs by_epoch=True and the epoch length")
        end = end if end == INF else int(end * epoch_length)
        return cls(*args, begin=int(begin * epoch_length), end=end, by_epoch=False, **kwargs)


@PARAM_SCHEDULERS.register_module()
class QuadraticWarmupFromZeroLR(LRSchedulerMixin, _ClosedFormScheduler):
    """``(t / T)²``: 0 at the first step, reaching the base rate where the next scheduler begins."""

    def factor(self, step: int, span: int) -> float:
        return (step / span) ** 2


@PARAM_SCHEDULERS.register_module()
class CosineToMinLR(LRSchedulerMixin, _ClosedFormScheduler):
    """Half a cosine from the base rate down to ``min_ratio`` × base over the range."""

    def __init__(self, optimizer, min_ratio: float = 0.05, **kwargs):
        self.min_ratio = min_ratio
        super().__init__(optimizer, **kwargs)

    def factor(self, step: int, span: int) -> float:
        return self.min_ratio + 0.5 * (1 - self.min_ratio) * (1 + math.cos(math.pi * step / span))


@PARAM_SCHEDULERS.register_module()
class FlatTailLR(LRSchedulerMixin, _ClosedFormScheduler):
    """``factor`` × base over the range (the recipe's last, "no augmentation" epochs)."""

    def __init__(self, optimizer, factor: float = 0.05, **kwargs):
        self.constant = factor
        super().__init__(optimizer, **kwargs)

    def factor(self, step: int, span: int) -> float:
        return self.constant

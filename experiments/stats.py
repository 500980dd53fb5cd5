"""Confidence intervals and the stop rule's test, from scipy.stats.

* a mean: Student's t-interval (``scipy.stats.t.interval`` around the standard error);
* a proportion: the Wilson score interval (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``);
* "is A worse than B": Welch's one-sided t-test (``scipy.stats.ttest_ind(equal_var=False)``), which does not
  assume equal variances (variants rarely have them).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from types import ModuleType

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval (None with fewer than two samples); ``n`` samples."""

    value: float
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": round(self.value, 6), "low": _round(self.low), "high": _round(self.high), "n": self.n}


def _scipy() -> ModuleType:
    """scipy.stats, imported on first use: most processes (workers, web) never need it, and it is heavy."""
    from scipy import stats

    return stats


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def mean_interval(values: list[float]) -> Interval | None:
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, None, None, len(values))
    if statistics.pstdev(values) == 0:
        return Interval(mean, mean, mean, len(values))
    st = _scipy()
    low, high = st.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=st.sem(values))
    return Interval(mean, float(low), float(high), len(values))


def proportion_interval(successes: int, n: int) -> Interval | None:
    if n == 0:
        return None
    ci = _scipy().binomtest(successes, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high), n)


def p_worse(a: list[float], b: list[float], *, higher_is_better: bool) -> float | None:
    """The p-value of "A is worse than B" (one-sided Welch t-test); None when it cannot be told."""
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:  # the test is undefined; the answer is not
        mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
        return 0.0 if (mean_a < mean_b if higher_is_better else mean_a > mean_b) else 1.0
    result = _scipy().ttest_ind(a, b, equal_var=False, alternative="less" if higher_is_better else "greater")
    p = float(result.pvalue)
    return None if math.isnan(p) else p

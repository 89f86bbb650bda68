"""Fault injection: seeded, reproducible failures for exercising a client's retries.

Real Harbor has no rate limiter (NOTES §2), so 429s here stand for a proxy or gateway in
front of it. Each request draws the next fault from one seeded generator, so the same seed
and the same request sequence give the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    NONE = "none"
    ERROR = "error"  # 500, masked body (NOTES §4)
    RATE_LIMIT = "rate_limit"  # 429 TOO_MANY_REQUEST with Retry-After
    DROP = "drop"  # the TCP connection is closed without a response
    SLOW = "slow"  # the response is delayed by slow_seconds


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Rates are probabilities per request (they must add up to at most 1).
    ``only_paths`` limits faults to API paths containing one of these substrings
    (e.g. ``("/artifacts",)``); ``/ping`` and ``/health`` are never faulted unless listed."""

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.5
    seed: int = 0
    only_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.rate_limit_rate, self.drop_rate, self.slow_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")

    @property
    def active(self) -> bool:
        return (self.error_rate + self.rate_limit_rate + self.drop_rate + self.slow_rate) > 0


class FaultInjector:
    """Draws one fault per eligible request, in request order, from ``plan.seed``."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)  # noqa: S311 - reproducible, not secret
        self._lock = threading.Lock()
        self.history: list[Fault] = []

    def eligible(self, path: str) -> bool:
        if not self.plan.active:
            return False
        if self.plan.only_paths:
            return any(p in path for p in self.plan.only_paths)
        return not path.endswith(("/ping", "/health"))

    def draw(self) -> Fault:
        plan = self.plan
        with self._lock:
            roll = self._rng.random()
            fault = Fault.NONE
            for rate, kind in ((plan.error_rate, Fault.ERROR),
                               (plan.rate_limit_rate, Fault.RATE_LIMIT),
                               (plan.drop_rate, Fault.DROP), (plan.slow_rate, Fault.SLOW)):
                if roll < rate:
                    fault = kind
                    break
                roll -= rate
            self.history.append(fault)
            return fault

    def sequence(self, n: int) -> list[Fault]:
        """The first ``n`` faults a fresh injector with this plan draws (for tests/docs)."""
        fresh = FaultInjector(self.plan)
        return [fresh.draw() for _ in range(n)]

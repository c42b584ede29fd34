"""The invocation's deadline: a point in monotonic time by which retries must give up."""

from __future__ import annotations

import time
from dataclasses import dataclass

from syncer.errors import DeadlineExceededError

MIN_REQUEST_S = 0.05


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in monotonic time by which retries must give up (Lambda's remaining time)."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining_s(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def request_timeout(self, timeout_s: float) -> float:
        """``timeout_s``, or less when the time left is shorter; raises when too little is left.

        Every request gets this, so an invocation reports its failures before Lambda ends it,
        instead of only its waits between retries being bounded.
        """
        left = self.remaining_s()
        if left < MIN_REQUEST_S:
            raise DeadlineExceededError(
                f"{left:.2f}s of the invocation left: not starting another request"
            )
        return min(timeout_s, left)

    def check_fits(self, timeout_s: float) -> None:
        """Raise unless a request that may take ``timeout_s`` (not shortenable) fits in time."""
        left = self.remaining_s()
        if left < timeout_s:
            raise DeadlineExceededError(
                f"{left:.2f}s of the invocation left, a request may take {timeout_s:.2f}s: "
                "not starting it"
            )

"""Each postback host's share of a worker's slots, so one customer's slow or dead receiver
slows only that customer's postbacks.

A postback job holds a worker slot while it runs. Were every job for a hanging receiver to
wait its turn inside the worker, they would fill every slot and stop the MMS submits and
other accounts' postbacks too. So a host gets at most `limit` POSTs in flight, and at most
as many jobs again waiting a moment for one of them (only when the host answers fast enough
that the wait is short); any further job for it is handed back to the queue, due again
about when the host should have room (`admit` returns that delay), and holds no slot
meanwhile. All postbacks together hold at most `total` slots, leaving the rest to the
deliveries.

A host's limit follows how it answers, as TCP's congestion window does: halved at every
timeout (down to one), one more for every answer in time (up to `per_host`). A receiver
that takes longer than the timeout gets one postback at a time rather than a retry of each
of them after every timeout.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Final

Host = tuple[str, str, int]  # scheme, host, port: what the HTTP client pools by

WAIT: Final = 0.5  # seconds a job may wait in the worker for its host's turn
LATEST: Final = 60.0  # seconds a job handed back waits at most before it tries again
_BUSY_RETRY: Final = 1.0  # seconds a job waits when all postbacks together are at `total`
_KEEP: Final = 10_000  # hosts remembered; idle ones at their full limit are forgotten first


@dataclasses.dataclass(slots=True)
class _HostState:
    """How one host is doing: its limit, POSTs in flight, jobs waiting for a turn."""

    limit: float
    busy: int = 0
    waiting: collections.deque[asyncio.Future[None]] = dataclasses.field(
        default_factory=collections.deque
    )
    seconds: float = 0.1  # a POST's usual duration (moving average), timeouts included
    # When the POSTs in flight began, oldest first: a host that has not answered for a while
    # is known to be slow before its first timeout.
    started: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    next_turn: float = 0.0  # when the last job handed back was told to come again


class PostbackShares:
    """Admission of postback POSTs, per host and in all; one per worker."""

    def __init__(
        self,
        per_host: int = 16,
        total: int = 128,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_host, self.total, self.clock = per_host, total, clock
        self.hosts: dict[Host, _HostState] = {}
        self.busy = 0

    @classmethod
    def for_worker(cls, concurrency: int, per_host: int) -> PostbackShares:
        """The shares of a worker running `concurrency` jobs at once: postbacks take at most
        half of them, one host at most `per_host` and at most a quarter of that half."""
        total = max(1, concurrency // 2)
        return cls(max(1, min(per_host, total // 4)), total)

    async def admit(self, host: Host) -> float | None:
        """None: the caller may POST now, and must call `done` after. Otherwise the seconds
        after which the job should be tried again, holding no slot meanwhile."""
        state = self._state(host)
        if self.busy >= self.total:
            return _BUSY_RETRY * (1 + random.uniform(0, 0.2))
        if state.busy < state.limit and not state.waiting:
            self._take(state)
            return None
        wait = state.seconds * (len(state.waiting) + 1) / state.limit
        if len(state.waiting) >= state.limit or wait > WAIT:
            return self._later(state)
        return None if await self._wait_turn(state) else self._later(state)

    def done(self, host: Host, seconds: float, *, timed_out: bool) -> None:
        """A POST admitted by `admit` ended after `seconds`, answered or `timed_out`."""
        state = self._state(host)
        state.seconds += (seconds - state.seconds) * 0.3
        if timed_out:
            state.limit = max(1.0, state.limit / 2)
        else:
            state.limit = min(float(self.per_host), state.limit + 1)
        self._give_back(state)

    def _give_back(self, state: _HostState) -> None:
        """A slot is free again: the job waiting longest for this host gets it."""
        state.busy -= 1
        self.busy -= 1
        if state.started:
            state.started.popleft()
        while state.waiting and state.busy < state.limit and self.busy < self.total:
            turn = state.waiting.popleft()
            if not turn.done():
                self._take(state)
                turn.set_result(None)

    async def _wait_turn(self, state: _HostState) -> bool:
        """Wait up to WAIT for `done` to hand this job a slot; whether it did."""
        turn = asyncio.get_running_loop().create_future()
        state.waiting.append(turn)
        try:
            async with asyncio.timeout(WAIT):
                await turn
        except TimeoutError:
            pass
        except BaseException:  # cancelled: a slot handed over meanwhile goes back
            if turn.done() and not turn.cancelled():
                self._give_back(state)
            raise
        finally:
            if turn in state.waiting:
                state.waiting.remove(turn)
        # A slot handed over just as the wait timed out is this job's all the same.
        return turn.done() and not turn.cancelled()

    def _take(self, state: _HostState) -> None:
        state.busy += 1
        self.busy += 1
        state.started.append(self.clock())

    def _later(self, state: _HostState) -> float:
        """The jobs handed back come again one turn of the host apart: a turn is the time
        one of its slots takes to free, so they return about as fast as it can take them."""
        now = self.clock()
        waited = now - state.started[0] if state.started else 0.0
        turn = max(0.001, max(state.seconds, waited) / state.limit)
        state.next_turn = min(max(state.next_turn, now) + turn, now + LATEST)
        return max(turn, state.next_turn - now) * (1 + random.uniform(0, 0.1))

    def _state(self, host: Host) -> _HostState:
        state = self.hosts.get(host)
        if state is None:
            if len(self.hosts) >= _KEEP:
                self._forget_idle()
            state = self.hosts[host] = _HostState(limit=float(self.per_host))
        return state

    def _forget_idle(self) -> None:
        for host, state in list(self.hosts.items()):
            if not state.busy and not state.waiting and state.limit >= self.per_host:
                del self.hosts[host]

"""Which queues a worker pool takes jobs from, and how it shares its free threads among them.

``start_threads(n, queues=...)`` takes:

- nothing: the ``"default"`` queue only (where jobs go that name no queue);
- a list, ``["critical", "default"]``: strict order. Every claim fills the free
  threads from the first queue, then from the next, so a later queue only gets
  threads the earlier ones leave idle;
- a dict of weights, ``{"critical": 10, "default": 1}``: weighted, as Faktory's
  queue weights. The free threads of each claim are dealt to the queues by smooth
  weighted round robin (the dealing carries over from one claim to the next, so
  that over many claims the split is the ratio of the weights, without the noise
  of random picks), and the places a queue cannot fill (it is empty, paused or at
  a limit) go to the other queues in the same claim: an empty queue lends its share.

Weights share threads among queues rather than giving each queue threads of its
own, so no thread ever idles while any served queue has work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobqueue._queues import DEFAULT_QUEUE, check_queue_name

#: What ``start_threads(queues=...)`` accepts.
QueueSpec = Sequence[str] | Mapping[str, int] | None

_MAX_WEIGHT = 1_000_000


class QueuePlan:
    """The queues of one pool run and the order of each claim among them. Not thread-safe:
    only the claimer thread deals."""

    def __init__(self, spec: QueueSpec | Any = None) -> None:
        self.weights: dict[str, int] | None = None
        if spec is None:
            self.queues: list[str] = [DEFAULT_QUEUE]
        elif isinstance(spec, Mapping):
            weights = {}
            for name, weight in spec.items():
                check_queue_name(name)
                if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= _MAX_WEIGHT:
                    raise ValueError(f"the weight of queue {name!r} must be a positive int, got {weight!r}")
                weights[name] = weight
            if not weights:
                raise ValueError("queues needs at least one queue")
            self.weights = weights
            self.queues = list(weights)
        elif isinstance(spec, str | bytes) or not isinstance(spec, Sequence):
            raise ValueError(
                f"queues must be a list of queue names (strict order) or a dict of weights, got {spec!r}"
            )
        else:
            self.queues = [check_queue_name(name) for name in spec]
            if not self.queues:
                raise ValueError("queues needs at least one queue")
            if len(set(self.queues)) != len(self.queues):
                raise ValueError(f"queues names a queue twice: {list(spec)!r}")
        self._current = dict.fromkeys(self.queues, 0)

    @property
    def strict(self) -> bool:
        """True for strict order (a list), False for weights."""
        return self.weights is None

    def describe(self) -> str:
        """For the log: ``critical:10, default:1`` or ``critical > default``."""
        if self.weights is None:
            return " > ".join(self.queues)
        return ", ".join(f"{name}:{weight}" for name, weight in self.weights.items())

    def deal(self, places: int) -> list[tuple[str, int]]:
        """Share ``places`` free places among the queues: ``(queue, places)`` in the order to
        claim them, every queue listed. The claimer hands the places a queue leaves unused
        to the queues after it, then to those before it."""
        if self.weights is None:
            return [(self.queues[0], places)] + [(name, 0) for name in self.queues[1:]]
        shares = dict.fromkeys(self.queues, 0)
        total = sum(self.weights.values())
        for _ in range(places):  # smooth weighted round robin, one pick per place
            for name, weight in self.weights.items():
                self._current[name] += weight
            pick = max(self.queues, key=lambda n: self._current[n])
            self._current[pick] -= total
            shares[pick] += 1
        return sorted(shares.items(), key=lambda item: -item[1])

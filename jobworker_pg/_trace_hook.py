"""Where enqueueing asks tracing for a span: a hook that jobworker_pg.tracing installs.

Without it (the default) enqueueing pays one ``is None`` check and stores no trace context;
this module imports no tracing library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from psycopg.types.json import Jsonb

from jobqueue import Job

#: ``hook(action, jobs)`` is a context manager around storing ``jobs``; it yields the W3C
#: trace context (``{"traceparent": ...}``) to store with them, or None.
EnqueueHook = Callable[[str, Sequence[Job]], AbstractContextManager[dict[str, str] | None]]

_hook: EnqueueHook | None = None


def set_enqueue_hook(hook: EnqueueHook | None) -> None:
    """Install (or, with None, remove) the enqueue hook."""
    global _hook
    _hook = hook


@contextmanager
def enqueue_trace(action: str, jobs: Sequence[Job]) -> Iterator[Jsonb | None]:
    """The trace context to store with ``jobs`` (None without tracing), inside the hook's span."""
    hook = _hook
    if hook is None:
        yield None
        return
    with hook(action, jobs) as carrier:
        yield Jsonb(carrier) if carrier else None

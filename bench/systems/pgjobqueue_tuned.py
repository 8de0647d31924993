"""pg-jobqueue with its tuning options (see :class:`bench.systems.pgjobqueue.PgJobqueueTuned`)."""

from bench.systems.pgjobqueue import TUNED as SYSTEM

__all__ = ["SYSTEM"]

"""The web dashboard: overview, jobs, bundles, workers, bulk actions and ``/metrics``.

Needs the ``dashboard`` extra (``pip install 'pg-jobqueue[dashboard]'``). Serve it with
``jobqueue dashboard``, or mount the ASGI app in your own Starlette or FastAPI app,
behind your own authentication::

    from fastapi import FastAPI
    from jobworker_pg.dashboard import create_app

    app = FastAPI()
    app.mount("/jobqueue", create_app("postgresql://app@db/app", read_only=True))
"""

from jobworker_pg.dashboard._app import Dashboard, create_app
from jobworker_pg.dashboard._security import PASSWORD_ENV, is_loopback

__all__ = ["PASSWORD_ENV", "Dashboard", "create_app", "is_loopback"]

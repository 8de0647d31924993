"""The dashboard's ASGI application: routes, templates, static files."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobqueue import InvalidJobError, JobNotFoundError, JobQueueError
from jobworker_pg._conninfo import resolve_conninfo
from jobworker_pg._service import PostgresService
from jobworker_pg.dashboard._chart import per_minute_chart
from jobworker_pg.dashboard._data import (
    BULK_RETRY_LIMIT,
    EXACT_COUNT_CAP,
    PAGE_SIZE,
    DashboardData,
    JobFilter,
    StateFilter,
)
from jobworker_pg.dashboard._metrics_endpoint import metrics_endpoint
from jobworker_pg.dashboard._security import (
    CSRF_FIELD,
    BasicAuth,
    SecurityHeaders,
    csrf_ok,
    csrf_token,
    set_csrf_cookie,
)

logger = logging.getLogger(__name__)

_HERE = Path(str(resources.files(__package__)))


class Dashboard:
    """What the routes share: the reads, the service for actions, the settings."""

    def __init__(self, conninfo: str, *, read_only: bool, refresh_seconds: float, title: str) -> None:
        self.data = DashboardData(conninfo)
        self.service = PostgresService(conninfo)
        self.read_only = read_only
        self.refresh_seconds = refresh_seconds
        self.title = title
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,  # every value is user data unless proven otherwise
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["ago"] = _ago
        self.templates.filters["pretty_json"] = _pretty_json
        self.templates.filters["ts"] = _timestamp

    def close(self) -> None:
        """Close the database pools (idempotent)."""
        self.data.close()
        self.service.close()

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        template = self.templates.get_template(name)
        html = template.render(
            request=request,
            url_for=request.url_for,
            csrf_field=CSRF_FIELD,
            csrf_token=csrf_token(request),
            read_only=self.read_only,
            title=self.title,
            refresh_seconds=self.refresh_seconds,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        set_csrf_cookie(request, response)
        return response


def create_app(
    conninfo: str | None = None,
    *,
    password: str | None = None,
    read_only: bool = False,
    refresh_seconds: float = 5.0,
    title: str = "jobqueue",
) -> Starlette:
    """The dashboard as an ASGI app, to serve alone or mount under a prefix::

        app.mount("/jobs", create_app("postgresql://app@db/app"))

    ``conninfo`` defaults to $JOBQUEUE_DATABASE_URL / $DATABASE_URL. With ``password``
    every request needs HTTP Basic credentials with it (any user name); without, the
    dashboard trusts its caller: mount it behind the host app's own authentication, or
    serve it on loopback only (``jobqueue dashboard`` refuses otherwise). ``read_only``
    hides every action and refuses them server-side. State-changing requests are POSTs
    with a CSRF token. The app opens two small connection pools; they close with the
    app's lifespan, or call ``app.state.dashboard.close()`` when the host app does not
    run sub-app lifespans (Starlette's Mount does not).
    """
    dashboard = Dashboard(
        resolve_conninfo(conninfo), read_only=read_only, refresh_seconds=refresh_seconds, title=title
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            dashboard.close()

    middleware = [Middleware(SecurityHeaders)]
    if password:
        middleware.append(Middleware(BasicAuth, password=password))
    routes = _routes(dashboard)
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error(dashboard)},
    )
    app.state.dashboard = dashboard
    return app


def _routes(d: Dashboard) -> list[Route | Mount]:
    def overview(request: Request) -> Response:
        return d.render(request, "overview.html", page="overview", **_overview_context(d))

    def overview_live(request: Request) -> Response:
        return d.render(request, "_live.html", **_overview_context(d))

    def jobs(request: Request) -> Response:
        params = request.query_params
        if params.get("id"):
            job_id = _uuid_or_none(params["id"])
            if job_id is None:
                raise HTTPException(400, "not a job id (expected a UUID)")
            return RedirectResponse(request.url_for("job", job_id=str(job_id)), status_code=303)
        try:
            state = StateFilter(params.get("state") or "all")
        except ValueError:
            raise HTTPException(400, f"unknown state; expected one of {', '.join(StateFilter)}") from None
        f = JobFilter(
            state=state,
            type=params.get("type") or None,
            origin=params.get("origin") or None,
            bundle=_uuid_param(params.get("bundle"), "bundle"),
            queue=params.get("queue") or None,
            before=_uuid_param(params.get("before"), "before"),
        )
        rows = d.data.jobs(f, PAGE_SIZE + 1)
        page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
        next_query = None
        if more:
            query = {k: v for k, v in params.items() if k != "before" and v}
            query["before"] = str(page[-1].id)
            next_query = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return d.render(
            request,
            "jobs.html",
            page="jobs",
            jobs=page,
            filter=f,
            states=list(StateFilter),
            next_query=next_query,
            done=_done(request, "deleted"),
        )

    def job(request: Request) -> Response:
        job_id = _path_uuid(request, "job_id")
        try:
            found = d.service.get_job(job_id)
        except JobNotFoundError:
            raise HTTPException(404, f"no job {job_id}") from None
        return d.render(
            request,
            "job.html",
            page="jobs",
            job=found,
            trace=d.data.trace_context(job_id),
            done=_done(request, r"retry|cancel"),
        )

    def job_action(request: Request, form: Any) -> Response:
        job_id = _path_uuid(request, "job_id")
        action = request.path_params["action"]
        try:
            if action == "retry":
                d.service.reset_job(job_id)
            elif action == "cancel":
                d.service.cancel_job(job_id)
            elif action == "delete":
                d.service.delete_job(job_id)
            else:
                raise HTTPException(404, "unknown action")
        except JobNotFoundError:
            raise HTTPException(404, f"no job {job_id}") from None
        except JobQueueError as exc:
            raise HTTPException(409, str(exc)) from None
        logger.info("dashboard: %s job %s", action, job_id, extra={"job_id": str(job_id), "action": action})
        if action == "delete":
            return _redirect_done(request.url_for("jobs"), "deleted")
        return _redirect_done(request.url_for("job", job_id=str(job_id)), action)

    def bundles(request: Request) -> Response:
        before = _uuid_param(request.query_params.get("before"), "before")
        rows = d.data.bundles(before, PAGE_SIZE + 1)
        page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
        return d.render(
            request,
            "bundles.html",
            page="bundles",
            bundles=page,
            next_before=str(page[-1].id) if more else None,
        )

    def bundle(request: Request) -> Response:
        bundle_id = _path_uuid(request, "bundle_id")
        found = d.data.bundle(bundle_id)
        if found is None:
            raise HTTPException(404, f"no bundle {bundle_id}")
        return d.render(request, "bundle.html", page="bundles", b=found)

    def workers(request: Request) -> Response:
        return d.render(request, "workers.html", page="workers", workers=d.data.workers())

    def periodic(request: Request) -> Response:
        return d.render(
            request,
            "periodic.html",
            page="periodic",
            schedules=d.service.list_periodic(),
            done=_done(request, r"(enable|disable|run) .{1,100}"),
        )

    def periodic_action(request: Request, form: Any) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        actions = {"enable": d.service.enable_periodic, "disable": d.service.disable_periodic}
        try:
            if action == "run":
                d.service.run_periodic_now(name)
            elif action in actions:
                actions[action](name)
            else:
                raise HTTPException(404, "unknown action")
        except JobNotFoundError:
            raise HTTPException(404, f"no periodic schedule named {name!r}") from None
        logger.info(
            "dashboard: %s periodic schedule %r", action, name, extra={"action": f"periodic-{action}"}
        )
        return _redirect_done(request.url_for("periodic"), f"{action} {name}")

    def queues(request: Request) -> Response:
        return d.render(
            request,
            "queues.html",
            page="queues",
            queues=d.data.queues(),
            done=_done(request, r"(pause|resume) .{1,100}"),
        )

    def queue_action(request: Request, form: Any) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("pause", "resume"):
            raise HTTPException(404, "unknown action")
        try:
            d.service.configure_queue(name, paused=action == "pause")
        except InvalidJobError as exc:
            raise HTTPException(400, str(exc)) from None
        logger.info("dashboard: %s queue %r", action, name, extra={"action": f"queue-{action}"})
        return _redirect_done(request.url_for("queues"), f"{action} {name}")

    def bulk(request: Request) -> Response:
        return d.render(
            request,
            "bulk.html",
            page="bulk",
            done=_done(request, r"(retried|deleted) \d+"),
            limit=BULK_RETRY_LIMIT,
        )

    def bulk_retry_failed(request: Request, form: Any) -> Response:
        job_type = str(form.get("type") or "").strip()
        if not job_type:
            raise HTTPException(400, "name the job type whose failed jobs to retry")
        if form.get("confirm") != "yes":
            count = d.data.count_failed_of_type(job_type)
            return d.render(
                request,
                "confirm.html",
                page="bulk",
                action=request.url_for("bulk_retry_failed"),
                fields={"type": job_type},
                question=f"Retry {min(count, BULK_RETRY_LIMIT):,} failed jobs of type",
                subject=job_type,
                detail=f"{count:,} failed; at most {BULK_RETRY_LIMIT:,} are reset per request."
                if count > BULK_RETRY_LIMIT
                else None,
            )
        ids = d.data.failed_ids_of_type(job_type)
        reset = d.service.reset_jobs(ids) if ids else []
        logger.info(
            "dashboard reset %d failed jobs of type %r", len(reset), job_type, extra={"action": "bulk-retry"}
        )
        return _redirect_done(request.url_for("bulk"), f"retried {len(reset)}")

    def bulk_delete_finished(request: Request, form: Any) -> Response:
        try:
            days = int(str(form.get("days", "")))
        except ValueError:
            raise HTTPException(400, "days must be a whole number") from None
        if days < 0:
            raise HTTPException(400, "days must be 0 or more")
        if form.get("confirm") != "yes":
            count, capped = d.data.count_finished_before(days)
            return d.render(
                request,
                "confirm.html",
                page="bulk",
                action=request.url_for("bulk_delete_finished"),
                fields={"days": str(days)},
                question=f"Delete {'more than ' if capped else ''}{count:,} succeeded jobs (outside bundles) "
                "finished more than this many days ago:",
                subject=str(days),
                detail="Failed jobs stay for inspection." if count < EXACT_COUNT_CAP else None,
            )
        deleted = d.service.delete_finished_jobs(older_than=days * 86400.0)
        logger.info("dashboard deleted %d finished jobs", deleted, extra={"action": "bulk-delete"})
        return _redirect_done(request.url_for("bulk"), f"deleted {deleted}")

    return [
        Route("/", overview, name="overview"),
        Route("/overview/live", overview_live, name="overview_live"),
        Route("/jobs", jobs, name="jobs"),
        Route("/jobs/{job_id}", job, name="job"),
        Route("/jobs/{job_id}/{action}", _post(d, job_action), methods=["POST"], name="job_action"),
        Route("/bundles", bundles, name="bundles"),
        Route("/bundles/{bundle_id}", bundle, name="bundle"),
        Route("/workers", workers, name="workers"),
        Route("/periodic", periodic, name="periodic"),
        Route(
            "/periodic/{name:path}/{action}",
            _post(d, periodic_action),
            methods=["POST"],
            name="periodic_action",
        ),
        Route("/queues", queues, name="queues"),
        Route("/queues/{name:path}/{action}", _post(d, queue_action), methods=["POST"], name="queue_action"),
        Route("/bulk", bulk, name="bulk"),
        Route("/bulk/retry-failed", _post(d, bulk_retry_failed), methods=["POST"], name="bulk_retry_failed"),
        Route(
            "/bulk/delete-finished",
            _post(d, bulk_delete_finished),
            methods=["POST"],
            name="bulk_delete_finished",
        ),
        Route("/metrics", metrics_endpoint(d.data), name="metrics"),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]


def _overview_context(d: Dashboard) -> dict[str, Any]:
    data = d.data.overview()
    return {"o": data, "chart": per_minute_chart(data.per_minute, data.now)}


def _post(
    d: Dashboard, action: Callable[[Request, Any], Response]
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a POST action: the checks of :func:`_check_post` on the event loop,
    then ``action(request, form)`` (it calls the database) on a worker thread."""

    async def endpoint(request: Request) -> Response:
        form = await _check_post(request, d)
        return await run_in_threadpool(action, request, form)

    return endpoint


def _redirect_done(url: URL, done: str) -> RedirectResponse:
    """The redirect after an action (303: the browser GETs ``url``), which confirms ``done``."""
    return RedirectResponse(f"{url}?{urlencode({'done': done})}", status_code=303)


async def _check_post(request: Request, d: Dashboard) -> Any:
    """Refuse a state change in read-only mode or without a matching CSRF token."""
    if d.read_only:
        raise HTTPException(403, "the dashboard is read-only")
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def _http_error(d: Dashboard) -> Any:
    def handle(request: Request, exc: HTTPException) -> Response:
        return d.render(
            request,
            "error.html",
            status_code=exc.status_code,
            page="",
            status=exc.status_code,
            message=exc.detail,
        )

    return handle


def _done(request: Request, allowed: str) -> str | None:
    """The confirmation an action's redirect asked for, if it is one of ours (never echo
    arbitrary text from a link someone else crafted)."""
    done = request.query_params.get("done")
    return done if done is not None and re.fullmatch(allowed, done) else None


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _uuid_param(value: str | None, name: str) -> UUID | None:
    if not value:
        return None
    parsed = _uuid_or_none(value)
    if parsed is None:
        raise HTTPException(400, f"{name} must be a UUID")
    return parsed


def _path_uuid(request: Request, name: str) -> UUID:
    parsed = _uuid_or_none(request.path_params[name])
    if parsed is None:
        raise HTTPException(404, "not a valid id")
    return parsed


def _ago(value: datetime | float | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    seconds = (
        value
        if isinstance(value, float | int)
        else (((now or datetime.now(value.tzinfo)) - value).total_seconds())
    )
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f} s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 172800:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} days"
    return f"in {text}" if future else f"{text} ago"


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _timestamp(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(sep=" ", timespec="seconds")

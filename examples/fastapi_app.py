"""FastAPI: enqueue a job inside the request's SQLAlchemy transaction, run it in the app.

The signup endpoint inserts a user and enqueues its welcome email in one
transaction (``jobqueue.add(job, conn=session)``): both commit, or neither
does. A duplicate email rolls back, and no email is ever sent for it. Workers
see the job only after the commit.

The app's lifespan runs a ``jobworker.AsyncWorker`` on the app's own event loop:
the async handlers of ``signup_jobs`` run inside the app, with the claims,
heartbeats and reaper of any worker (more worker processes may join:
``jobqueue worker signup_jobs``). ``GET /jobs/<id>?wait=5`` waits for the job
with ``jobqueue.wait_for_job_async``, woken by its job_stopped notification.

    pip install fastapi uvicorn                      # not dependencies of pg-jobqueue
    export DATABASE_URL="$(jobqueue embedded url)"   # or your postgresql://user:password@host/db
    jobqueue migrate
    cd examples
    uvicorn fastapi_app:app &
    curl -X POST localhost:8000/signups -H 'content-type: application/json' -d '{"email": "ada@example.com"}'
    curl 'localhost:8000/jobs/<job_id>?wait=5'
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from signup_jobs import WelcomeEmail
from sqlalchemy import Engine, String, create_engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import jobqueue
import jobworker
from jobworker_pg import init_job_queue


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "example_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)


class SignupIn(BaseModel):
    email: str


class SignupOut(BaseModel):
    user_id: int
    job_id: UUID


def make_engine(conninfo: str) -> Engine:
    """SQLAlchemy on psycopg 3 (which ``conn=`` needs), from a URL or a key=value conninfo."""
    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo))


def database_url() -> str:
    url = os.environ.get("JOBQUEUE_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError('set DATABASE_URL, e.g. export DATABASE_URL="$(jobqueue embedded url)"')
    return url


engine: Engine | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global engine
    url = database_url()
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    service = init_job_queue(url)  # the default service for jobqueue.add / get_job
    async with jobworker.AsyncWorker(service, concurrency=50):  # signup_jobs' handlers, on this loop
        yield
    # Leaving the block stopped claiming and finished the running jobs.
    jobqueue.close()
    engine.dispose()


app = FastAPI(lifespan=lifespan)


def get_session() -> Iterator[Session]:
    assert engine is not None, "the app's lifespan has not run"
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@app.post("/signups", status_code=201)
def signup(body: SignupIn, session: SessionDep) -> SignupOut:
    try:
        with session.begin():  # commits at the end of the block, rolls back on an exception
            user = User(email=body.email)
            session.add(user)
            session.flush()  # the INSERT runs now: a duplicate email raises here
            job = jobqueue.new_job(
                jobqueue.job_type_of(WelcomeEmail),
                "signup",
                WelcomeEmail(user_id=user.id, email=user.email),
                max_retry_count=5,
            )
            jobqueue.add(job, conn=session)  # joins this transaction
    except IntegrityError:
        raise HTTPException(status_code=409, detail=f"{body.email} has already signed up") from None
    return SignupOut(user_id=user.id, job_id=job.id)


@app.get("/jobs/{job_id}")
async def get_job(job_id: UUID, wait: float = 0) -> dict[str, Any]:
    """The job; with ``wait`` (seconds), once it has stopped (or as it is when time is up)."""
    try:
        if wait > 0:
            try:
                job = await jobqueue.wait_for_job_async(job_id, timeout=wait)
            except jobqueue.WaitTimeoutError:
                job = await jobqueue.get_job_async(job_id)
        else:
            job = await jobqueue.get_job_async(job_id)
    except jobqueue.JobNotFoundError:
        raise HTTPException(status_code=404, detail=f"no job {job_id}") from None
    return {"id": str(job.id), "type": job.type, "state": job.state.value, "result": job.result}

"""The job handlers of the FastAPI example (no FastAPI needed to run them).

``fastapi_app.py`` runs them inside the app with ``jobworker.AsyncWorker``; a
separate worker process runs them too: ``cd examples && jobqueue worker signup_jobs``.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel

import jobworker

logger = logging.getLogger(__name__)


class WelcomeEmail(BaseModel):
    """Payload of the welcome email job; its job type is ``jobqueue.job_type_of(WelcomeEmail)``."""

    user_id: int
    email: str


@jobworker.job()  # job type inferred from the annotation: "signup_jobs.WelcomeEmail"
async def send_welcome_email(payload: WelcomeEmail) -> dict[str, str]:
    """Send the email (here: log it; a real one would await an HTTP API). Raising would
    retry the job per its max_retry_count."""
    await asyncio.sleep(0)
    logger.info("welcome email to %s (user %d)", payload.email, payload.user_id)
    return {"sent_to": payload.email}

"""The job handlers of the FastAPI example (no FastAPI needed to run them).

Run them with ``cd examples && jobqueue worker signup_jobs --threads 4``.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

import jobworker

logger = logging.getLogger(__name__)


class WelcomeEmail(BaseModel):
    """Payload of the welcome email job; its job type is ``jobqueue.job_type_of(WelcomeEmail)``."""

    user_id: int
    email: str


@jobworker.job()  # job type inferred from the annotation: "signup_jobs.WelcomeEmail"
def send_welcome_email(payload: WelcomeEmail) -> dict[str, str]:
    """Send the email (here: log it). Raising would retry the job per its max_retry_count."""
    logger.info("welcome email to %s (user %d)", payload.email, payload.user_id)
    return {"sent_to": payload.email}

"""The project's tasks."""

from typing import TYPE_CHECKING

from django.db import connection

if TYPE_CHECKING:  # the backport is typed; Django (without stubs here) is not
    from django_tasks import TaskContext, task
else:
    try:
        from django.tasks import TaskContext, task
    except ImportError:  # Django < 6.0: the backport
        from django_tasks import TaskContext, task


@task
def send_receipt(order_id: int, *, email: str) -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute("select total from orders where id = %s", [order_id])
        (total,) = cursor.fetchone()
    return {"order": order_id, "to": email, "total": total}


@task
def backend_pid() -> int:
    """The server process of this thread's Django connection (a new one after a close)."""
    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        return int(cursor.fetchone()[0])


@task
def refuse(reason: str) -> None:
    raise ValueError(reason)


@task(takes_context=True)
def attempt_number(context: TaskContext) -> int:
    return int(context.attempt)

"""One view: store an order and enqueue its receipt in the same transaction."""

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

from shop.tasks import send_receipt


def create_order(request: HttpRequest) -> JsonResponse:
    order_id = int(request.POST["id"])
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("insert into orders (id, total) values (%s, %s)", [order_id, 42])
        result = send_receipt.enqueue(order_id, email=request.POST["email"])
        if request.POST.get("fail"):
            raise RuntimeError("payment declined")  # rolls back the order and the task
    return JsonResponse({"result_id": result.id})

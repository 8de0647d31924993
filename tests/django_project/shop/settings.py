"""Settings: the database is $SHOP_DATABASE_URL (a libpq URL), the tasks go to pg-jobqueue."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["SHOP_DATABASE_URL"])

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = ["jobworker_pg.contrib.django"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        "CONN_MAX_AGE": 0,
    }
}
TASKS = {
    "default": {
        "BACKEND": "jobworker_pg.contrib.django.JobQueueBackend",
        "OPTIONS": {"MAX_RETRIES": 0},
    }
}

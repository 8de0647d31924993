"""A small Django project that enqueues tasks into pg-jobqueue (tests/test_django.py)."""

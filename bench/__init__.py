"""Benchmarks of pg-jobqueue against pgqueuer, procrastinate and a raw-SQL floor.

Run ``python -m bench --help``. Not part of the test suite; results go to ``bench/results/``.
"""

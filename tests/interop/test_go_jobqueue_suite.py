"""go-jobqueue's own test suite (48 top-level tests in its root, jobworker, jobworkerdb and
tests packages, at e938ce0) passes against a database set up by install_schema and by
``jobqueue migrate``.

One of its tests is flaky on any schema, go-jobqueue's own included (3 failures in 16
runs seen there): two subtests of TestSimulateJobs ("Logs warning if error happens not
in last retry", "Logs error if error happens in last retry") check the ERROR records of
a logger they override, but the previous subtest's StopThreads can cancel a claim in
flight, whose "Error while retrieving the next job ... canceling statement due to user
request" lands in the next subtest's log. Only a failure of those subtests at those
checks is run again (up to twice); any other failure fails at once. (Seen here: about
one run in four, on our schema and on go-jobqueue's alike.)

Needs GO, GO_JOBQUEUE_SRC and GO_DEPS_DIR (docs/interop.md); skipped otherwise.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from helpers import PgServer
from interop.gotools import SUITE_TOP_LEVEL_TESTS, Go, SuiteResult

from jobworker_pg import install_schema
from jobworker_pg._migrate import migrate

FLAKY_TEST = "github.com/domonda/go-jobqueue/tests TestSimulateJobs"
# The two subtests that check the ERROR records of a shared, overridden logger, and the
# lines of those checks (the leaked record itself stays in the test's buffer).
FLAKY_SUBTESTS = {
    "TestSimulateJobs/Logs_warning_if_error_happens_not_in_last_retry": "jobexecution_test.go:241",
    "TestSimulateJobs/Logs_error_if_error_happens_in_last_retry": "jobexecution_test.go:302",
}
RERUNS = 2


def _only_the_known_flake(result: SuiteResult) -> bool:
    """Only those subtests failed, each at its log-record check."""
    failed_subtests = set(re.findall(r"--- FAIL: (\S+)", result.output)) - {"TestSimulateJobs"}
    return (
        result.failed() == [FLAKY_TEST]
        and bool(failed_subtests)
        and failed_subtests <= FLAKY_SUBTESTS.keys()
        and all(FLAKY_SUBTESTS[name] in result.output for name in failed_subtests)
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("set_up", [install_schema, migrate], ids=["install_schema", "jobqueue_migrate"])
def test_go_jobqueue_own_suite_passes_on_our_schema(
    set_up: Callable[[str], None], go: Go, go_pg: dict[str, str], pg_server: PgServer
) -> None:
    runs: list[SuiteResult] = []
    for _ in range(1 + RERUNS):
        name = f"jobqueue_gosuite_{uuid.uuid4().hex[:12]}"
        url = pg_server.create_database(name)  # each run starts from an empty queue, as theirs do
        try:
            set_up(url)
            result = go.run_suite({**go_pg, "POSTGRES_DB": name})
        finally:
            pg_server.drop_database(name)
        runs.append(result)
        if not _only_the_known_flake(result):
            break
    last = runs[-1]
    assert last.counts() == {"pass": SUITE_TOP_LEVEL_TESTS}, (
        f"{last.counts()} failed: {last.failed()} packages: {last.failed_packages}\n{last.output[-20000:]}"
    )
    assert last.returncode == 0

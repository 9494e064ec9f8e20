"""`make test` runs the suite in four processes with `--dist loadgroup`: the tests of one
`xdist_group` (those sharing a module fixture: a crash run, a service, a browser) go to
one process, which sets the fixture up once. pytest-xdist passes the group to its
scheduler in the test's node ID; with pytest 9.2 that suffix was silently lost, the groups
spread over every process, and the crash run was made once per process in one `make test`.
"""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("test_parallel_runs")
def test_the_scheduler_is_told_the_group_of_a_grouped_test(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        return  # one process, or another way of sharing the tests out: no groups to keep
    assert request.node.nodeid.endswith("@test_parallel_runs"), (
        f"{request.node.nodeid}: this pytest and pytest-xdist lose --dist loadgroup's groups"
    )

"""How many R workers draw: the CPUs the process may use, capped by a cgroup v2 CPU quota (a
Cloud Run task limited to N vCPUs) — never more workers than the quota's CPUs."""

from __future__ import annotations

import os

import pytest

from partybal.page.render import default_cores

VISIBLE = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        (None, VISIBLE),  # no cgroup v2 file
        ("max 100000\n", VISIBLE),  # no quota
        ("100000 100000\n", 1),
        ("150000 100000\n", min(2, VISIBLE)),  # 1.5 CPUs: two workers
        ("50000 100000\n", 1),  # below one CPU: still one worker
        ("800000 100000\n", min(8, VISIBLE)),
        ("garbage\n", VISIBLE),
        ("100000 0\n", VISIBLE),
    ],
)
def test_workers_follow_the_cpu_quota(tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert default_cores(path) == expected

"""``python -m tests.support.faulty_job``: the render job with fault injection, for tests/reliability.

It runs :func:`partybal.pipeline.job.main` unchanged, except that with ``PARTYBAL_FAULT=<point>``
in the execution's environment the job dies at that named step of publishing
(:func:`partybal.pipeline.job.step`: ``after-assets``, ``after-page``) the way a SIGKILL or an OOM
kill would: ``os._exit(137)``, no status record, no clean-up. The reliability suite's local stack
runs executions with this command (``LocalStack(job_command=...)``); the job that is deployed has
no such code (tests/deploy/test_deployed_contents.py).
"""

from __future__ import annotations

import logging
import os
import sys

from partybal import logs
from partybal.pipeline import job

FAULT_ENV = "PARTYBAL_FAULT"
COMMAND = (sys.executable, "-m", "tests.support.faulty_job")  # run from the repository root
_step = job.step


def faulty_step(point: str) -> None:
    _step(point)
    if os.environ.get(FAULT_ENV) == point:
        logs.log(
            logging.getLogger("partybal.pipeline.job"), logging.ERROR, f"fault injected: exiting at {point}", slug=None
        )
        logging.shutdown()
        os._exit(137)


def main() -> int:
    job.step = faulty_step  # publish_site looks the step up at call time
    return job.main()


if __name__ == "__main__":
    sys.exit(main())

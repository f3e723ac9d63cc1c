"""Cloud Functions (2nd gen) entry points: thin shells over tested functions in ``partybal``.

* ``on_results_finalized`` — results bucket finalize (Eventarc or Pub/Sub notification) →
  coalesced render request on ``RENDER_TOPIC``;
* ``dispatch_render`` — render request message → Cloud Run job execution (``RUN_JOB``);
* ``rebuild_toc`` — state bucket finalize/delete → ``index.html`` of the site bucket;
* ``sweep_pending`` — any message on the sweep topic (Cloud Scheduler) → re-request renders whose
  request was lost (old pending markers, results newer than their status record);
* ``snapshot_experimenter`` — any message on the Experimenter topic (Cloud Scheduler) → the state
  bucket's copy of Experimenter's experiment list, written when it changed.

Bad input is logged and acknowledged; only infrastructure errors raise (so the event is retried).
"""

from __future__ import annotations

import os
import sys

import functions_framework

try:
    import partybal  # noqa: F401  (deployed alongside; installed in the venv locally)
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import partybal  # noqa: F401

from partybal import logs
from partybal.pipeline import coalesce, dispatch, experimenter, sweeper, toc

logs.setup(os.environ.get("PARTYBAL_LOG_LEVEL", "INFO"))


@functions_framework.cloud_event
def on_results_finalized(cloud_event) -> None:
    coalesce.handle_results_event(cloud_event["type"], cloud_event.data, cloud_event["id"])


@functions_framework.cloud_event
def dispatch_render(cloud_event) -> None:
    dispatch.handle_render_request(cloud_event["type"], cloud_event.data, cloud_event["id"])


@functions_framework.cloud_event
def rebuild_toc(cloud_event) -> None:
    toc.handle_state_event(cloud_event["type"], cloud_event.data, cloud_event["id"])


@functions_framework.cloud_event
def sweep_pending(cloud_event) -> None:
    sweeper.handle_sweep_event(cloud_event["type"], cloud_event.data, cloud_event["id"])


@functions_framework.cloud_event
def snapshot_experimenter(cloud_event) -> None:
    experimenter.handle_snapshot_event(cloud_event["type"], cloud_event.data, cloud_event["id"])

"""Case 6: poison messages.

* A render that always fails (malformed statistics): Cloud Run retries it ``max_retries`` times
  (stand-in: 3), the status says ``failed`` with the reason, and nothing re-requests it — not
  the sweeper either, even after its threshold has passed.
* A render request whose dispatch always fails (the stand-in answers ``:run`` with 503 for it, so
  ``run_job`` raises): ``dispatch_render`` nacks, Pub/Sub redelivers, and after
  ``max_delivery_attempts`` (5) the message is on the dead-letter topic. Checked on the emulator:
  it does enforce the dead-letter policy.

Meanwhile another experiment renders normally.
"""

from __future__ import annotations

import time

import pytest

from partybal import layout
from tests.reliability import support

pytestmark = pytest.mark.emulators


def drain(sub, name: str) -> list:
    out = []
    while True:
        resp = sub.pull(request={"subscription": name, "max_messages": 100}, timeout=5)
        if not resp.received_messages:
            return out
        sub.acknowledge(request={"subscription": name, "ack_ids": [m.ack_id for m in resp.received_messages]})
        out.extend(resp.received_messages)


def test_poison_messages_are_bounded(rstack, evidence):
    from partybal.local.stack import _subscriber

    s = rstack
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    sub = _subscriber(s.pubsub_host)
    dlq = f"projects/{s.project}/subscriptions/render-dead-letters"
    drain(sub, dlq)

    render_poison, dispatch_poison, bystander = "rel_poison_render", "rel_poison_dispatch", "rel-poison-bystander"
    s.configure_run(reject_slugs=[dispatch_poison])
    try:
        files = support.tiny_experiment("rel-poison-render")
        name = layout.results_name(layout.Kind.STATISTICS, render_poison, "overall")
        files[name] = b'[{"metric": "uri_count", "statistic": '  # truncated: always fails
        started = time.time()
        support.upload(s, files)
        s.publish_render(dispatch_poison)
        support.upload(s, support.tiny_experiment(bystander))

        ok = support.wait_until(
            lambda: support.fresh_and_ok(s, layout.file_slug(bystander)), 120, what="the bystander render"
        )
        failed = support.wait_until(
            lambda: (r := support.settled(s, render_poison)) and r["state"] == "failed" and r,
            120,
            what="the failing render",
        )
        n_failed = len(support.executions_for(s, render_poison))
        dead: list = []
        support.wait_until(
            lambda: dead.extend(m for m in drain(sub, dlq) if m.message.data == dispatch_poison.encode()) or dead,
            120,
            what="the request on the dead-letter topic",
        )
        # quiet: past the sweeper threshold and a few sweeps, nothing more happens to either
        wait = max(0.0, started + support.STALE_SECONDS + 4 * support.SWEEP_INTERVAL - time.time())
        time.sleep(wait)
        support.wait_quiet(s)
        rejected = [r for r in support.fetch_json(s.run_endpoint + "/rejected") if r["slug"] == dispatch_poison]
    finally:
        s.configure_run(reject_slugs=[])

    exs = support.executions_for(s, render_poison)
    claimed = support.claims(s, render_poison, offsets["on_results_finalized"])
    assert len(exs) == n_failed, f"{len(exs) - n_failed} more executions of the always-failing render after it failed"
    assert len(exs) == claimed, f"{len(exs)} executions, {claimed} marker claims (uploads racing the first job)"
    for e in exs:
        assert e["state"] == "failed" and len(e["attempts"]) == 4, e  # 1 + max_retries
    assert failed["reason"] and support.toc_state(support.index_html(s), render_poison) == "failed"
    assert support.sweeper_requests(s, render_poison, offsets["sweep_pending"]) == 0
    assert len(rejected) == 5, f"{len(rejected)} dispatch attempts (max_delivery_attempts is 5)"
    assert len(dead) >= 1
    attrs = dict(dead[0].message.attributes)
    assert attrs.get("CloudPubSubDeadLetterSourceDeliveryCount") == "5", attrs
    assert support.executions_for(s, dispatch_poison) == []
    assert ok["state"] == "ok"
    evidence.row(
        "6 poison: render always fails",
        "truncated statistics file; the job exits 1 on every attempt",
        "1 request",
        "executions == marker claims, each 4 attempts (1 + max_retries 3), status failed with reason, TOC failed, no new execution or sweeper request after its threshold",
        f"{len(exs)} execution(s); attempts {len(exs[0]['attempts'])}, exit codes {[a['exit_code'] for a in exs[0]['attempts']]}; reason: {failed['reason'][:100]}",
    )
    evidence.row(
        "6 poison: dispatch always fails",
        "run_job answered 503 for one slug (dispatch_render raises → nack)",
        "1 request",
        "deliveries counted at the stand-in == max_delivery_attempts (5), message on render-requests-dead-letter, no execution; a bystander renders ok",
        f"{len(rejected)} deliveries; dead-letter attributes: DeliveryCount={attrs.get('CloudPubSubDeadLetterSourceDeliveryCount')}, source={attrs.get('CloudPubSubDeadLetterSourceSubscription')}",
    )

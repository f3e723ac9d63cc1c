"""Case 4: the render job killed between uploading assets and the page, and between the page and
the status record (``PARTYBAL_FAULT``: test-only, ``os._exit(137)``, set for one experiment's
executions through the stand-in).

While every attempt dies: the live page still works with all its figures, the status record never
claims an ok render of the newer data, and the TOC never says ``ok``. Each attempt records the one
before it as ``killed (attempt n of 4)``; once the execution has ended the sweeper records the last
one (``killed (attempt 4 of 4)``) instead of requesting the render again: the TOC says ``failed``
with that reason and no further render is started. Then a manual re-render completes it.
"""

from __future__ import annotations

import re

import pytest

from partybal import layout
from tests.reliability import support

pytestmark = pytest.mark.emulators


def asset_folders(stack, fslug: str) -> set[str]:
    client = stack.storage()
    root = layout.assets_root(fslug) + "/"
    folders = {
        b.name[len(root) :].split("/", 1)[0]
        for b in client.list_blobs(client.bucket(stack.site_bucket), prefix=root)
        if not layout.is_render_record(b.name)  # a replaced page's exports and manifest outlive its folder
    }
    return {f for f in folders if layout.is_render_id(f)}  # not figures/ (shared, by content hash)


@pytest.mark.parametrize("point", ["after-assets", "after-page"])
def test_crash_mid_render(rstack, evidence, point):
    s = rstack
    support.wait_quiet(s)
    offsets = support.log_offsets(s)
    slug = f"rel-crash-{point}"
    fslug = layout.file_slug(slug)
    support.upload(s, support.small_experiment(slug, seed=1))
    good = support.wait_until(lambda: support.fresh_and_ok(s, fslug), 120, what="the first good render")
    n0 = len(support.executions_for(s, fslug))

    s.configure_run(env_for_slug={fslug: {"PARTYBAL_FAULT": point}})
    try:
        name = layout.results_name(layout.Kind.STATISTICS, fslug, "overall")
        newer = support.upload(s, {name: support.small_experiment(slug, seed=2)[name]})[name]

        def all_crashed():
            exs = support.executions_for(s, fslug)[n0:]
            return exs and all(e["state"] == "failed" for e in exs) and not support.pending(s, fslug)

        support.wait_until(all_crashed, 400, what="the crashing execution to fail")
        crashed = support.executions_for(s, fslug)[n0:]
        codes = [a["exit_code"] for e in crashed for a in e["attempts"]]
        assert codes and set(codes) == {137}, codes
        # the state a reader sees while the job keeps dying
        html, figures = support.page_figures(s, fslug)
        assert figures and all(code == 200 for _, code in figures), figures
        page_rid = support.render_id_of_page(html, fslug)
        if point == "after-assets":
            assert page_rid == good["render_id"], "the page changed although the job died before writing it"
        else:
            assert page_rid != good["render_id"], "after-page: the new page should be live"
        n_attempts = len(crashed[-1]["attempts"])
        killed = f"killed (attempt {n_attempts} of {n_attempts})"
        record = support.wait_until(
            lambda: (r := s.status_record(fslug)) and r.get("reason") == killed and r,
            60,
            what=f"the sweeper to record {killed!r}",
        )
        assert (
            record["state"] == "failed"
            and record["page"] == good["page"]
            and record["input_generations"][name] == newer
        )
        # the TOC may still show an earlier attempt's failure: wait for the rebuild after the sweeper's record
        toc = support.wait_until(
            lambda: support.toc_state(html := support.index_html(s), fslug) == "failed" and killed in html and "failed",
            60,
            what=f"the TOC to say failed: {killed}",
        )
        # and no endless retries: nothing is requested again for these inputs
        n_crashed = len(support.executions_for(s, fslug))
        import time

        time.sleep(support.STALE_SECONDS * 2 + support.SWEEP_INTERVAL * 2)
        assert len(support.executions_for(s, fslug)) == n_crashed, "a killed render was requested again"
        assert support.sweeper_requests(s, fslug, offsets["sweep_pending"]) == 0
        job_logs = "".join(open(a["log"]).read() for e in crashed for a in e["attempts"] if a.get("log"))
        recorded_by_attempts = sorted(set(re.findall(r"previous attempt (killed \(attempt \d+ of \d+\))", job_logs)))
    finally:
        s.configure_run(env_for_slug={})

    s.publish_render(slug)  # the manual retry
    how = "manual re-render"
    final = support.wait_until(lambda: support.fresh_and_ok(s, fslug), 180, what=f"the retry ({how})")
    assert final["input_generations"][name] == newer
    html, figures = support.page_figures(s, fslug)
    assert support.render_id_of_page(html, fslug) == final["render_id"]
    assert figures and all(code == 200 for _, code in figures)

    # left: the live page's figures and those of the page it replaced (open tabs still load them; the
    # local stack's grace is 0); crashed attempts' orphans and the pages before are gone
    def cleaned():
        folders = asset_folders(s, fslug)
        rest = folders - {final["render_id"]}
        return final["render_id"] in folders and len(rest) <= 1 and all(r >= page_rid for r in rest)

    support.wait_until(cleaned, 30, what="old and orphaned asset folders removed")
    swept = support.sweeper_requests(s, fslug, offsets["sweep_pending"])
    assert (
        support.toc_state(
            support.wait_until(
                lambda: support.toc_state(support.index_html(s), fslug) == "ok" and support.index_html(s),
                30,
                what="TOC ok",
            ),
            fslug,
        )
        == "ok"
    )
    evidence.row(
        f"4 crash {point}",
        f"PARTYBAL_FAULT={point} (os._exit(137)) on every attempt of the render of a newer upload",
        f"{len(codes)} attempts",
        "meanwhile: live page 200 with all figures, TOC never ok; each attempt records the one before as killed, the sweeper the last: status failed 'killed (attempt 4 of 4)', TOC failed, no render requested again (2 × threshold); then a manual retry renders the newer data, page == status, asset folders: the live page's and the one it replaced",
        f"recorded by the attempts: {', '.join(recorded_by_attempts)}; by the sweeper: {killed}; TOC while crashed: {toc}; "
        f"executions after it: 0 more; retry by {how}; sweeper requests: {swept}",
    )

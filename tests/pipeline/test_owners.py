"""One owner per concept (issue 15): settings, exceptions, ids, gs:// URLs, time formats, the
status record — each read, built or parsed in one module."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil

import pytest

import partybal
from partybal import layout, settings, times
from partybal.errors import ConfigError, PartybalError, Rejected
from partybal.pipeline import status

UTC = dt.UTC


def test_settings_read_numbers_and_name_the_bad_one():
    assert settings.int_setting({}, "X", 7) == 7 and settings.int_setting({"X": " 12 "}, "X", 7) == 12
    assert settings.float_setting({"X": "2.5"}, "X", 1.0) == 2.5 and settings.float_setting({"X": ""}, "X", 1.0) == 1.0
    with pytest.raises(ConfigError, match="X must be a whole number, not 'soon'"):
        settings.int_setting({"X": "soon"}, "X", 7)
    with pytest.raises(ConfigError, match="X must be at least 1, not 0"):
        settings.int_setting({"X": "0"}, "X", 7, minimum=1)
    with pytest.raises(ConfigError, match="SWEEP_INTERVAL_SECONDS must be a number, not 'often'"):
        settings.SweepSettings.from_env(
            {"RESULTS_BUCKET": "r", "STATE_BUCKET": "s", "RENDER_TOPIC": "t", "SWEEP_INTERVAL_SECONDS": "often"}
        )
    with pytest.raises(ConfigError, match="environment variable SITE_BUCKET is not set"):
        settings.TocSettings.from_env({"RESULTS_BUCKET": "r", "STATE_BUCKET": "s"})


def test_sweep_settings_are_the_coalescing_settings_plus_the_schedule():
    env = {
        "RESULTS_BUCKET": "r",
        "STATE_BUCKET": "s",
        "RENDER_TOPIC": "t",
        "COALESCE_STALE_SECONDS": "30",
        "RUN_API_ENDPOINT": "http://x",
    }
    s = settings.SweepSettings.from_env(env)
    assert (s.results_bucket, s.state_bucket, s.topic, s.min_age_seconds) == ("r", "s", "t", 30)
    assert s.interval_seconds == settings.DEFAULT_SWEEP_INTERVAL_SECONDS and s.run_api_endpoint == "http://x"


def _exception_classes():
    for info in pkgutil.walk_packages(partybal.__path__, "partybal."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                yield info.name, name, obj


def test_every_exception_of_partybal_has_the_one_base():
    found = {f"{m}.{n}": cls for m, n, cls in _exception_classes()}
    assert "partybal.layout.Ignored" in found and "partybal.pipeline.dispatch.BadRequest" in found  # the scan is real
    control_flow = {"partybal.local.stack._Terminate"}  # a signal turned into an exception, never an error
    strays = sorted(k for k, cls in found.items() if not issubclass(cls, PartybalError) and k not in control_flow)
    assert not strays, f"exception classes outside the PartybalError hierarchy (partybal/errors.py): {strays}"
    for name in (
        "partybal.layout.Ignored",
        "partybal.pipeline.events.NotUnderstood",
        "partybal.pipeline.dispatch.BadRequest",
    ):
        assert issubclass(found[name], Rejected)
    assert issubclass(found["partybal.local.jobimage.ImageError"], ConfigError)


@pytest.mark.parametrize(
    "url, parsed",
    [
        ("gs://b", ("b", "")),
        ("gs://b/", ("b", "")),
        ("gs://b/preview/", ("b", "preview/")),
        ("gs://s/backfill/x.json", ("s", "backfill/x.json")),
    ],
)
def test_gs_urls(url, parsed):
    assert layout.parse_gs_url(url) == parsed
    assert layout.parse_gs_url(layout.gs_url(*parsed)) == parsed


@pytest.mark.parametrize("url", ["gs://", "gs:///x", "s3://b/x", "b/x"])
def test_not_gs_urls(url):
    with pytest.raises(ValueError):
        layout.parse_gs_url(url)


def test_render_ids_sort_in_start_order_and_name_asset_folders():
    t = dt.datetime(2024, 5, 1, 12, 0, 59, 999_999, tzinfo=UTC)
    ids = [layout.new_render_id(t + dt.timedelta(microseconds=i)) for i in range(3)]  # across a second
    assert ids == sorted(ids) and all(layout.is_render_id(i) for i in ids)
    assert layout.is_render_id("20240501T120000Z-abcdef")  # an id of an older version (to the second)
    assert not layout.is_render_id("figures") and not layout.is_render_id(ids[0] + "/x")
    assert layout.backfill_list_name(ids[0]) == f"backfill/{ids[0]}.json"


def test_state_names_are_built_and_parsed_by_layout():
    for what, name in (
        (layout.PENDING, layout.pending_name("e", "preview/")),
        (layout.STATUS, layout.status_name("e", "preview/")),
        (layout.RUNNING, layout.running_name("e", "preview/")),
    ):
        assert name.startswith(layout.state_folder(what, "preview/"))
        parsed = layout.parse_state_name(name)
        assert (parsed.what, parsed.file_slug, parsed.prefix) == (what, "e", "preview/")
    with pytest.raises(ValueError):
        layout.state_folder("elsewhere")
    assert layout.results_listing_prefix(layout.Kind.STATISTICS, "e") == "statistics/statistics_e"


def test_times():
    t = dt.datetime(2024, 5, 1, 14, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert (
        times.fmt_time(t) == "2024-05-01 12:05 UTC"
        and times.fmt_time(None) == "unknown"
        and times.fmt_time(None, missing="") == ""
    )
    assert times.iso(t) == "2024-05-01T12:05:00+00:00" and times.parse_iso(times.iso(t)) == t
    assert times.parse_iso("2024-05-01T12:05:00Z") == t and times.parse_iso("yesterday") is None
    assert times.fmt_date(t) == "2024-05-01" and times.fmt_date(None) == ""


def test_status_records_come_from_one_typed_record():
    fields = set(status.StatusRecord.__dataclass_fields__) - {"killed"}
    fresh = status.new_record("my-exp", "my_exp", "", "20240501T120000000000Z-abcdef", "0")
    assert set(fresh) == fields and fresh["state"] == status.FAILED and fresh["name"] == "my-exp"
    previous = {
        **fresh,
        "state": status.OK,
        "page": "my_exp.html",
        "page_rendered_at": "2024-05-01T12:00:00+00:00",
        "srm": {"mismatch": False},
    }
    killed = status.killed_record(
        previous,
        {"attempt": "1", "max_attempts": "4", "run_id": "r"},
        "my-exp",
        "my_exp",
        "",
        dt.datetime(2024, 5, 2, tzinfo=UTC),
    )
    assert (
        set(killed) == fields | {"killed"}
        and killed["reason"] == "killed (attempt 2 of 4)"
        and killed["page"] == "my_exp.html"
    )
    crashed = status.crash_record(
        previous, "my-exp", "my_exp", "", "infrastructure error: x", dt.datetime(2024, 5, 2, tzinfo=UTC), "1", "r2"
    )
    assert crashed["state"] == status.FAILED and crashed["page"] == "my_exp.html" and crashed["run_id"] == "r2"
    assert not status.record_problem(crashed) and not status.record_problem(killed) and not status.record_problem(fresh)
    outside = status.outcome_record("my_exp", {"a": 1}, "", "my_exp.html", dt.datetime(2024, 5, 2, tzinfo=UTC))
    assert (
        outside["state"] == status.OK
        and outside["page_rendered_at"] == "2024-05-02T00:00:00+00:00"
        and not status.record_problem(outside)
    )

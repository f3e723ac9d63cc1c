import pytest

from partybal import layout
from partybal.layout import Ignored, Kind


@pytest.mark.parametrize(
    "slug,expected",
    [
        ("my-exp.v2", "my_exp_v2"),
        ("already_file_form", "already_file_form"),
        ("ünï cødé/../x", "_n__c_d_____x"),
        ('a"); system("x', "a____system__x"),
    ],
)
def test_file_slug(slug, expected):
    assert layout.file_slug(slug) == expected
    assert layout.file_slug(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "name,kind,slug,period,prefix",
    [
        ("statistics/statistics_my_exp_weekly.json", Kind.STATISTICS, "my_exp", "weekly", ""),
        (
            "statistics/statistics_my_exp_preenrollment_weekly.json",
            Kind.STATISTICS,
            "my_exp",
            "preenrollment_weekly",
            "",
        ),
        (
            "statistics/statistics_my_exp_preenrollment_days28.json",
            Kind.STATISTICS,
            "my_exp",
            "preenrollment_days28",
            "",
        ),
        ("statistics/statistics_weekly_overall.json", Kind.STATISTICS, "weekly", "overall", ""),
        ("statistics/statistics_a_daily_days28.json", Kind.STATISTICS, "a_daily", "days28", ""),
        ("metadata/metadata_my_exp.json", Kind.METADATA, "my_exp", None, ""),
        ("errors/errors_my_exp.json", Kind.ERRORS, "my_exp", None, ""),
        ("preview/statistics/statistics_p_overall.json", Kind.STATISTICS, "p", "overall", "preview/"),
    ],
)
def test_parse_results_name(name, kind, slug, period, prefix):
    blob = layout.parse_results_name(name)
    assert (blob.kind, blob.file_slug, blob.period, blob.prefix) == (kind, slug, period, prefix)
    assert layout.results_name(kind, slug, period, prefix) == name


@pytest.mark.parametrize(
    "name,why",
    [
        ("statistics/statistics_my_exp_weekly-abcdefgh.ndjson", "temporary"),
        ("statistics/statistics_my_exp_weekly-abcdefgh.json", "temporary"),
        ("statistics/statistics_my_exp_hourly.json", "unknown period"),
        ("statistics/statistics_weekly.json", "unknown period"),
        ("statistics/other_my_exp_weekly.json", "not a statistics"),
        ("../statistics/statistics_x_weekly.json", "prefix"),
        ("a/../statistics/statistics_x_weekly.json", "prefix"),
        ("other/statistics/statistics_x_weekly.json", "prefix"),
        ("statistics/statistics_x y_weekly.json", "not a statistics"),
        ("index.html", "not a statistics"),
        ("metadata/metadata_" + "x" * 300 + ".json", "longer"),
    ],
)
def test_parse_results_name_ignores(name, why):
    with pytest.raises(Ignored, match=why):
        layout.parse_results_name(name)


def test_preview_prefix_can_be_refused():
    with pytest.raises(Ignored):
        layout.parse_results_name("preview/metadata/metadata_x.json", allowed_prefixes=("",))


def test_every_period_round_trips():
    for period in layout.PERIODS:
        name = layout.results_name(Kind.STATISTICS, "exp_1", period)
        assert layout.parse_results_name(name).period == period
    assert len(layout.results_names_for("e")) == len(layout.PERIODS) + 2


def test_site_and_state_names():
    assert layout.page_name("e") == "e.html"
    assert layout.assets_dir("e", "r1") == "e_files/r1"
    assert layout.assets_dir("e", "r1", "preview/") == "preview/e_files/r1"
    assert layout.parse_state_name(layout.pending_name("e")).what == "pending"
    assert layout.parse_state_name(layout.status_name("e", "preview/")).prefix == "preview/"
    assert layout.parse_state_name("index.html") is None

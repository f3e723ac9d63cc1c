"""How long render history is kept: a terraform variable used by the site bucket's lifecycle rule
for exactly the prefix partybal/layout.py writes history under."""

from __future__ import annotations

from partybal import layout

from .conftest import one, unquote


def test_history_is_kept_for_the_configured_days(tf):
    site = tf.resources("google_storage_bucket")["site"]
    rules = [(one(r["condition"]), one(r["action"])) for r in site.get("lifecycle_rule", [])]
    history = [(c, a) for c, a in rules if [unquote(p) for p in c.get("matches_prefix", [])] == [layout.HISTORY_FOLDER]]
    assert len(history) == 1, "one lifecycle rule for history/"
    cond, action = history[0]
    assert unquote(cond["age"]).strip("${}") == "var.history_retention_days"
    assert unquote(action["type"]) == "Delete"
    variable = tf.variables()["history_retention_days"]
    assert variable["default"] >= 365 and "history" in unquote(variable["description"])
    # the rule's prefix is where the job writes (not under preview/: previews expire with preview/)
    assert layout.history_name("x", "20261126T133000123456Z-abcdef").startswith(layout.HISTORY_FOLDER)

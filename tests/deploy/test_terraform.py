"""terraform/ against the code it deploys: entry points, environment contract, IAM, buckets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import unavailable

from .conftest import ROOT, cloud_event_handlers, contract_table, env_reads, one, unquote

MAIN = ROOT / "functions" / "main.py"

# Which Python modules run in which deployed component. functions/main.py is the glue of every
# function; the modules hold what each handler reads.
# "file::Class": only that class of the file (the component's settings view in partybal/settings.py).
COMPONENT_MODULES = {
    "finalize fn": ["partybal/pipeline/coalesce.py", "partybal/settings.py::CoalesceSettings"],
    "dispatch fn": ["partybal/pipeline/dispatch.py"],
    "job": ["partybal/pipeline/job.py"],
    "TOC fn": ["partybal/pipeline/toc.py", "partybal/settings.py::TocSettings"],
    # its settings are coalesce's plus its own
    "sweep fn": [
        "partybal/pipeline/sweeper.py",
        "partybal/settings.py::CoalesceSettings",
        "partybal/settings.py::SweepSettings",
    ],
    "experimenter fn": ["partybal/pipeline/experimenter.py"],
}
# Read by the code but legitimately unset in the cloud (local emulators, optional tuning).
LOCAL_ONLY = {
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "RUN_API_ENDPOINT",
    "PARTYBAL_FAULT",
}  # FAULT: tests/support/faulty_job.py
# Set per execution by dispatch_render, never on the job itself.
OVERRIDES = {"PARTYBAL_SLUG", "PARTYBAL_PREFIX"}
# Set per execution by `partybal backfill` (partybal/pipeline/backfill.py), never on the job itself.
BACKFILL_OVERRIDES = {"PARTYBAL_SLUGS_URI"}
CLOUD_EVENT_ENTRY_POINTS = {
    "on_results_finalized",
    "dispatch_render",
    "rebuild_toc",
    "sweep_pending",
    "snapshot_experimenter",
}


FUNCTION = "google_cloudfunctions2_function"


def _function_resource(tf) -> dict:
    """The one google_cloudfunctions2_function block every function comes from."""
    blocks = tf.resources(FUNCTION)
    assert len(blocks) == 1, f"the functions must come from one {FUNCTION} resource, found {sorted(blocks)}"
    (body,) = blocks.values()
    return body


def _functions(tf) -> dict[str, dict]:
    """Per-function settings: local.functions, the map the one resource iterates over (its keys are
    the instance keys, google_cloudfunctions2_function.this["<key>"])."""
    assert _function_resource(tf)["for_each"] == "${local.functions}"
    return tf.locals()["functions"]


def _entries(tf, entry_point: str) -> list[dict]:
    found = [f for f in _functions(tf).values() if unquote(f["entry_point"]) == entry_point]
    assert found, f"no function with entry point {entry_point}"
    return found


def _env_of(tf, entry) -> set[str]:
    env = entry["env"]
    if isinstance(env, str):  # a reference such as ${local.toc_env}
        m = re.fullmatch(r"\$\{local\.(\w+)\}", env)
        assert m, f"cannot resolve environment_variables = {env}"
        env = tf.locals()[m.group(1)]
    return set(env)


def _job_env(tf) -> set[str]:
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    container = one(one(one(job["template"])["template"])["containers"])
    return {unquote(e["name"]) for e in container.get("env", [])}


def _function_env(tf, entry_point: str) -> set[str]:
    """What every function with this entry point gets (rebuild_toc runs as two)."""
    return set.intersection(*(_env_of(tf, f) for f in _entries(tf, entry_point)))


def component_env(tf) -> dict[str, set[str]]:
    return {
        "finalize fn": _function_env(tf, "on_results_finalized"),
        "dispatch fn": _function_env(tf, "dispatch_render"),
        "TOC fn": _function_env(tf, "rebuild_toc"),
        "sweep fn": _function_env(tf, "sweep_pending"),
        "experimenter fn": _function_env(tf, "snapshot_experimenter"),
        "job": _job_env(tf),
    }


# --- entry points -----------------------------------------------------------------------------


def test_functions_main_exists():
    assert MAIN.is_file(), "functions/main.py is missing"


def test_every_entry_point_is_a_cloud_event_handler(tf):
    handlers = cloud_event_handlers(MAIN)
    assert one(_function_resource(tf)["build_config"])["entry_point"] == "${each.value.entry_point}"
    entry_points = {unquote(f["entry_point"]) for f in _functions(tf).values()}
    assert entry_points == CLOUD_EVENT_ENTRY_POINTS  # the names docs/architecture.md documents
    missing = entry_points - handlers
    assert not missing, (
        f"entry points without a @functions_framework.cloud_event handler in functions/main.py: {missing}"
    )


def test_functions_share_one_source_and_runtime(tf):
    build = one(_function_resource(tf)["build_config"])
    assert unquote(build["runtime"]) == "python311"
    storage = one(one(build["source"])["storage_source"])
    assert "local.function_source" in storage["bucket"] and "local.function_source" in storage["object"]
    obj = tf.resources("google_storage_bucket_object")["functions_source"]
    assert "output_md5" in obj["name"] or "output_sha" in obj["name"], "the source zip must be named by its hash"


def test_triggers(tf):
    fns = _functions(tf)
    fin = fns["on_results_finalized"]["trigger"]
    assert unquote(fin["event_type"]) == "google.cloud.storage.object.v1.finalized"
    assert unquote(fin["retry_policy"]) == "RETRY_POLICY_RETRY"
    assert fin["filters"] == {"bucket": "${local.results_bucket}"}

    toc = _entries(tf, "rebuild_toc")
    assert {unquote(f["trigger"]["event_type"]) for f in toc} == {
        "google.cloud.storage.object.v1.finalized",
        "google.cloud.storage.object.v1.deleted",
    }
    for f in toc:
        assert unquote(f["trigger"]["retry_policy"]) == "RETRY_POLICY_RETRY"
        assert f["trigger"]["filters"] == {"bucket": "${google_storage_bucket.state.name}"}

    assert fns["dispatch_render"]["trigger"] is None, "dispatch_render is reached by the push subscription (pubsub.tf)"


def test_the_resource_turns_each_trigger_into_one_event_trigger(tf):
    """trigger = null: no event_trigger block; otherwise one, with the trigger's settings, delivered
    by the events account, one event filter per entry of filters."""
    (dyn,) = _function_resource(tf)["dynamic"]
    (label, body) = next((k, v) for k, v in dyn.items() if not k.startswith("__"))
    assert unquote(label) == "event_trigger"
    assert body["for_each"] == "${each.value.trigger[*]}"
    content = one(body["content"])
    assert content["trigger_region"] == "${event_trigger.value.region}"
    assert content["event_type"] == "${event_trigger.value.event_type}"
    assert content["retry_policy"] == "${event_trigger.value.retry_policy}"
    assert content["pubsub_topic"] == "${try(event_trigger.value.pubsub_topic, null)}"
    assert content["service_account_email"] == "${google_service_account.events.email}"
    filters = one(content["dynamic"])['"event_filters"']
    assert filters["for_each"] == "${event_trigger.value.filters}"
    assert one(filters["content"])["attribute"] == "${event_filters.key}"
    assert one(filters["content"])["value"] == "${event_filters.value}"


def test_dispatch_has_bounded_retries_and_a_dead_letter_topic(tf):
    sub = tf.resources("google_pubsub_subscription")["dispatch"]
    assert "google_pubsub_topic.render_requests" in sub["topic"]
    push = one(sub["push_config"])
    assert 'google_cloudfunctions2_function.this["dispatch_render"]' in push["push_endpoint"]
    assert "oidc_token" in push
    dl = one(sub["dead_letter_policy"])
    assert "google_pubsub_topic.render_dead_letter" in dl["dead_letter_topic"]
    attempts = tf.variables()["dispatch_max_delivery_attempts"]
    assert dl["max_delivery_attempts"] == "${var.dispatch_max_delivery_attempts}"
    assert 5 <= attempts["default"] <= 100
    # dead-lettered messages are kept somewhere (docs/reliability.md: which failure goes where)
    assert (
        "google_pubsub_topic.render_dead_letter"
        in tf.resources("google_pubsub_subscription")["render_dead_letter"]["topic"]
    )


# --- environment contract ---------------------------------------------------------------------


def test_every_contract_variable_read_by_the_code_is_documented():
    table = contract_table()
    read = set()
    for path in [MAIN, *(ROOT / "partybal").rglob("*.py")]:
        read |= env_reads(path)
    contract_like = {v for v in read if v in table or v.endswith("_BUCKET") or v in {"RENDER_TOPIC", "RUN_JOB"}}
    undocumented = contract_like - set(table)
    assert not undocumented, f"read by the code but not in docs/architecture.md: {undocumented}"


@pytest.mark.parametrize("component", sorted(COMPONENT_MODULES))
def test_component_gets_every_contract_variable_its_code_reads(tf, component):
    table = contract_table()
    env = component_env(tf)[component]
    if component == "job":
        env = env | OVERRIDES | BACKFILL_OVERRIDES
    reads = set()
    for rel in COMPONENT_MODULES[component]:
        rel, _, cls = rel.partition("::")
        path = ROOT / rel
        assert path.is_file(), f"{rel} is missing"
        reads |= env_reads(path, cls or None)
    needed = {v for v in reads if v in table} - LOCAL_ONLY
    assert needed, f"no contract variable found in {COMPONENT_MODULES[component]}: is the scan broken?"
    missing = needed - env
    assert not missing, f"{component} reads {missing} but terraform does not set it"


def _has_documented_default(var: str) -> bool:
    """The variable's row in docs/architecture.md gives a default ("(default 1500)"): an optional
    tuning knob the deployment may leave unset."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|") and f"`{var}`" in line.split("|")[1]]
    return any(re.search(r"\(default \d", row) for row in rows)


def test_docs_table_is_honoured(tf):
    table = contract_table()
    envs = component_env(tf)
    for var, used_by in table.items():
        if var in LOCAL_ONLY or "locally" in used_by:
            continue
        if _has_documented_default(var):  # optional: the code's default applies when terraform leaves it unset
            continue
        users = list(envs) if used_by.strip() == "all" else [u.strip() for u in used_by.split(",")]
        for user in (u for u in users if u != "CLI"):  # the CLI runs on an operator's machine, not deployed
            have = envs[user] | (OVERRIDES | BACKFILL_OVERRIDES if user == "job" else set())
            assert var in have, f"docs/architecture.md says {user} uses {var}; terraform does not set it"


def test_render_topic_and_run_job_are_full_resource_names(tf):
    fns = _functions(tf)
    fin = fns["on_results_finalized"]["env"]
    assert fin["RENDER_TOPIC"] == "${local.render_topic}"
    assert tf.locals()["render_topic"] == "${google_pubsub_topic.render_requests.id}"  # projects/P/topics/T
    disp = fns["dispatch_render"]["env"]
    assert disp["RUN_JOB"] == "${local.run_job}"
    assert tf.locals()["run_job"] == "${google_cloud_run_v2_job.renderer.id}"  # projects/P/locations/L/jobs/J


def test_job_env_matches_dispatch_overrides(tf):
    dispatch_src = (ROOT / "partybal" / "pipeline" / "dispatch.py").read_text()
    overridden = set(re.findall(r"EnvVar\(\s*name\s*=\s*[\"']([A-Z_]+)[\"']", dispatch_src))
    assert overridden == OVERRIDES, f"dispatch.py overrides {overridden}"
    job_reads = env_reads(ROOT / "partybal" / "pipeline" / "job.py")
    assert overridden <= job_reads, "the job must read what the dispatcher overrides"
    job_env = _job_env(tf)
    assert not (job_env & overridden), "PARTYBAL_SLUG/PARTYBAL_PREFIX must be left to per-execution overrides"
    assert {"RESULTS_BUCKET", "SITE_BUCKET", "STATE_BUCKET", "GOOGLE_CLOUD_PROJECT"} <= job_env


def test_job_env_matches_backfill_overrides(tf):
    from partybal.pipeline import backfill

    request = backfill.backfill_job_request("projects/p/locations/l/jobs/j", "gs://state/backfill/x.json", 2)
    overridden = {e.name for c in request.overrides.container_overrides for e in c.env}
    assert overridden == BACKFILL_OVERRIDES, f"backfill.py overrides {overridden}"
    assert overridden <= env_reads(ROOT / "partybal" / "pipeline" / "job.py"), (
        "the job must read what the backfill overrides"
    )
    assert not (_job_env(tf) & overridden), "PARTYBAL_SLUGS_URI must be left to per-execution overrides"


# --- IAM --------------------------------------------------------------------------------------

PUBLIC = ("allUsers", "allAuthenticatedUsers")


def test_no_public_member_unless_guarded_by_public_site(tf):
    for rtype, name, body in tf.all_resources():
        members = body.get("member") or body.get("members") or ""
        if any(p in str(members) for p in PUBLIC):
            assert "var.public_site" in str(body.get("count", "")), f"{rtype}.{name} is public without var.public_site"
    for fname, text in tf.text.items():
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            if any(f'"{p}"' in code for p in PUBLIC):
                assert 'member = "allUsers"' in re.sub(r"\s+", " ", code), f"{fname}: unexpected public member: {line}"
    assert tf.variables()["public_site"]["default"] is False


def test_every_grant_is_commented(tf):
    for fname, text in tf.text.items():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if re.match(r'resource "google_\w+_iam_(member|binding)"', line):
                assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"{fname}:{i + 1}: say why this grant exists"


def test_no_project_level_grants_to_partybal_accounts_except_event_receiver_and_build_logs(tf):
    for name, body in tf.resources("google_project_iam_member").items():
        role = unquote(body["role"])
        assert role in {"roles/eventarc.eventReceiver", "roles/pubsub.publisher", "roles/logging.logWriter"}, (
            f"{name}: {role} at project level"
        )
        if role == "roles/pubsub.publisher":
            assert "gcs_service_agent" in body["member"], "only the GCS service agent publishes project-wide"
        if role == "roles/logging.logWriter":
            assert "google_service_account.build." in body["member"], "only the build account writes logs project-wide"


def _grants(tf, rtype):
    return [(n, b) for n, b in tf.resources(rtype).items()]


def test_dispatcher_may_run_the_job_with_overrides_without_acting_as_its_account(tf):
    job_grants = _grants(tf, "google_cloud_run_v2_job_iam_member")
    assert any(
        unquote(b["role"]) == "roles/run.jobsExecutorWithOverrides" and "service_account.dispatch" in b["member"]
        for _, b in job_grants
    )
    # Executing a job (with overrides) needs run.jobs.run[WithOverrides] on the job only; actAs is
    # checked when the job is deployed, by the deployer (iam.tf says why).
    sa_grants = _grants(tf, "google_service_account_iam_member")
    acts_as = [n for n, b in sa_grants if "service_account.dispatch" in b["member"]]
    assert not acts_as, f"the dispatcher needs no rights on service accounts: {acts_as}"


def test_components_have_their_own_accounts(tf):
    assert one(_function_resource(tf)["service_config"])["service_account_email"] == "${each.value.service_account}"
    by_entry_point: dict[str, set[str]] = {}
    for f in _functions(tf).values():
        by_entry_point.setdefault(unquote(f["entry_point"]), set()).add(f["service_account"])
    accounts = {}
    for entry_point, used in by_entry_point.items():
        assert len(used) == 1, f"{entry_point} runs as {used}"
        accounts[entry_point] = used.pop()
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    accounts["job"] = one(one(job["template"])["template"])["service_account"]
    assert len(set(accounts.values())) == len(accounts), accounts


def test_job_publishes_nothing(tf):
    for rtype in ("google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member"):
        for name, body in tf.resources(rtype).items():
            assert "service_account.job" not in body["member"], name


# --- buckets ----------------------------------------------------------------------------------


def _rules(bucket):
    return [(one(r["condition"]), one(r["action"])) for r in bucket.get("lifecycle_rule", [])]


def test_site_bucket_hardening_and_preview_lifecycle(tf):
    site = tf.resources("google_storage_bucket")["site"]
    assert site["uniform_bucket_level_access"] is True
    pap = site["public_access_prevention"]
    assert "enforced" in pap and "var.public_site" in pap
    assert one(site["versioning"])["enabled"] is True
    rules = _rules(site)
    preview = [(c, a) for c, a in rules if [unquote(p) for p in c.get("matches_prefix", [])] == ["preview/"]]
    assert len(preview) == 1, "one lifecycle rule for preview/"
    cond, action = preview[0]
    assert cond["age"] == 7
    assert unquote(action["type"]) == "Delete"
    assert any("num_newer_versions" in c for c, _ in rules), "noncurrent versions must be bounded"


def test_state_bucket_is_private(tf):
    state = tf.resources("google_storage_bucket")["state"]
    assert state["uniform_bucket_level_access"] is True
    assert unquote(state["public_access_prevention"]) == "enforced"
    for name, body in tf.resources("google_storage_bucket_iam_member").items():
        if "google_storage_bucket.state" in body["bucket"]:
            assert not any(p in body["member"] for p in PUBLIC), name


# --- variables and outputs --------------------------------------------------------------------


def test_every_variable_has_type_and_description(tf):
    variables = tf.variables()
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert unquote(body.get("description", "")).strip(), f"variable {name} has no description"


def test_outputs(tf):
    outputs = tf.outputs()
    assert {"site_bucket", "render_topic", "job_name", "site_url", "rerender_command"} <= set(outputs)
    cmd = unquote(outputs["rerender_command"]["value"])
    assert re.fullmatch(
        r"gcloud pubsub topics publish \$\{google_pubsub_topic\.render_requests\.name\} --message=<slug> --project=\$\{var\.project\}",
        cmd,
    ), cmd
    for name, body in outputs.items():
        assert unquote(body.get("description", "")).strip(), f"output {name} has no description"


def test_provider_pins(tf):
    """Patch releases only (test_provider_schema.py checks they are the schema's releases)."""
    terraform = one(tf.blocks("terraform"))
    assert ">= 1.5" in unquote(terraform["required_version"])
    providers = one(terraform["required_providers"])
    for name in ("google", "google-beta", "archive"):
        assert re.fullmatch(r"~> \d+\.\d+\.\d+", unquote(providers[name]["version"])), name
    assert unquote(providers["google"]["version"]) == unquote(providers["google-beta"]["version"])


def test_sweeper_is_scheduled_on_its_own_topic(tf):
    """sweep_pending (docs/reliability.md): Cloud Scheduler → its topic → the function, which
    re-publishes render requests as its own least-privilege account."""
    fn = _functions(tf)["sweep_pending"]
    trig = fn["trigger"]
    assert unquote(trig["event_type"]) == "google.cloud.pubsub.topic.v1.messagePublished"
    assert "google_pubsub_topic.sweep" in trig["pubsub_topic"]
    job = tf.resources("google_cloud_scheduler_job")["sweep"]
    assert "google_pubsub_topic.sweep" in one(job["pubsub_target"])["topic_name"]
    env = fn["env"]
    assert env["RENDER_TOPIC"] == "${local.render_topic}"
    publishers = [
        b for b in tf.resources("google_pubsub_topic_iam_member").values() if "service_account.sweeper" in b["member"]
    ]
    assert [unquote(b["role"]) for b in publishers] == ["roles/pubsub.publisher"]
    assert all("google_pubsub_topic.render_requests" in b["topic"] for b in publishers)
    writes = [
        b
        for b in tf.resources("google_storage_bucket_iam_member").values()
        if "service_account.sweeper" in b["member"] and unquote(b["role"]) != "roles/storage.objectViewer"
    ]
    assert writes and all(_condition(tf, b) == MARKERS_ONLY for b in writes), (
        "the sweeper may write pending markers only"
    )
    # it asks Cloud Run whether a marker's execution still runs: read-only, on the renderer job only
    viewers = [
        b
        for b in tf.resources("google_cloud_run_v2_job_iam_member").values()
        if "service_account.sweeper" in b["member"]
    ]
    assert [(unquote(b["role"]), b["name"]) for b in viewers] == [
        ("roles/run.viewer", "${google_cloud_run_v2_job.renderer.name}")
    ]


MARKERS_ONLY = (
    'resource.name.startsWith("projects/_/buckets/${google_storage_bucket.state.name}/objects/pending/")'
    ' || resource.name.startsWith("projects/_/buckets/${google_storage_bucket.state.name}/objects/preview/pending/")'
)


def _condition(tf, binding) -> str:
    expr = one(binding["condition"])["expression"]
    m = re.fullmatch(r"\$\{local\.(\w+)\}", expr)
    return unquote(tf.locals()[m.group(1)] if m else expr).replace('\\"', '"')


@pytest.mark.parametrize("account", ["finalize", "dispatch", "sweeper"])
def test_marker_writers_may_write_pending_markers_only(tf, account):
    writes = [
        b
        for b in tf.resources("google_storage_bucket_iam_member").values()
        if f"service_account.{account}." in b["member"]
        and "google_storage_bucket.state" in b["bucket"]
        and unquote(b["role"]) != "roles/storage.objectViewer"
    ]
    assert writes, f"{account} writes no markers"
    assert all(_condition(tf, b) == MARKERS_ONLY for b in writes), f"{account} may write more than pending markers"


# --- deploy fixes (issue 11) ------------------------------------------------------------------


def _variable_block(name: str) -> str:
    """The text of `variable "<name>" { ... }` in variables.tf (validation blocks included)."""
    text = (ROOT / "terraform" / "variables.tf").read_text()
    m = re.search(rf'^variable "{name}" \{{\n.*?^\}}\n', text, re.M | re.S)
    assert m, f'variable "{name}" is missing from variables.tf'
    return m.group(0)


def _terraform_module(mod: Path, text: str):
    """``text`` as the module in folder ``mod``, initialised; a runner of terraform commands in it.
    Blocks without provider resources (variables, locals) make a module whose init needs no download."""
    terraform = shutil.which("terraform")
    if not terraform:
        unavailable("terraform is missing: install the terraform CLI")
    mod.mkdir()
    (mod / "main.tf").write_text(text)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [terraform, *args], input=stdin, cwd=mod, capture_output=True, text=True, timeout=120, env=env
        )

    init = run("init", "-input=false", "-backend=false", "-no-color")
    assert init.returncode == 0, init.stderr
    return run


def _terraform_accepts(tmp_path, name: str, value: str) -> tuple[bool, str]:
    """Does terraform itself accept `-var name=value` (the variable's type and validation rules)?"""
    run = _terraform_module(tmp_path / f"{name}={value}", _variable_block(name))
    plan = run("plan", "-input=false", "-no-color", f"-var={name}={value}")
    return plan.returncode == 0, plan.stderr


def test_job_parallelism_defaults_to_no_limit(tf, tmp_path):
    """A backfill's N tasks run at once: parallelism 0 (no limit) by default, and allowed."""
    var = tf.variables()["job_parallelism"]
    assert var["default"] == 0
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    assert one(job["template"])["parallelism"] == "${var.job_parallelism}"
    for value, ok in (("0", True), ("20", True), ("-1", False), ("1.5", False)):
        accepted, err = _terraform_accepts(tmp_path, "job_parallelism", value)
        assert accepted is ok, f"job_parallelism={value}: accepted={accepted}\n{err}"


def test_run_job_overrides_cannot_change_parallelism():
    """What the request builders may override: the container env, and (backfill) the task count.
    Cloud Run's RunJobRequest.Overrides has no parallelism, so the job's own value applies to every
    execution; if an API release added one, this says to decide how the builders use it."""
    from google.cloud import run_v2

    from partybal.pipeline import backfill, dispatch

    assert set(run_v2.RunJobRequest.Overrides.meta.fields) == {"container_overrides", "task_count", "timeout"}
    job = "projects/p/locations/l/jobs/j"
    render = dispatch.run_job_request(
        job, dispatch.RenderRequest(slug="my-exp", file_slug="my_exp", prefix="", attributes={})
    )
    assert render.overrides.task_count == 0, "a render is one task (the job's task_count)"
    many = backfill.backfill_job_request(job, "gs://state/backfill/x.json", 7)
    assert many.overrides.task_count == 7
    for req in (render, many):
        assert not req.overrides.timeout, "the task timeout is the job's (terraform job_timeout_seconds)"
        (container,) = req.overrides.container_overrides
        assert not container.args and not container.clear_args and container.env, "env overrides only"


def test_job_timeout_leaves_r_time(tf, tmp_path):
    """PARTYBAL_R_TIMEOUT is the task timeout minus 60 s: the minimum must leave R minutes, not 0 s."""
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    container = one(one(one(job["template"])["template"])["containers"])
    r_timeout = next(e["value"] for e in container["env"] if unquote(e["name"]) == "PARTYBAL_R_TIMEOUT")
    m = re.fullmatch(r"\$\{tostring\(var\.job_timeout_seconds - (\d+)\)\}", r_timeout)
    assert m, r_timeout
    reserve = int(m.group(1))
    results = {}
    for value in ("60", "299", "300", "1800", "86401"):
        results[value] = _terraform_accepts(tmp_path, "job_timeout_seconds", value)[0]
    minimum = min(int(v) for v, ok in results.items() if ok)
    assert results == {"60": False, "299": False, "300": True, "1800": True, "86401": False}, results
    assert minimum - reserve >= 240, "R gets at least 4 minutes"


@pytest.mark.parametrize("bucket", ["state", "source"])
def test_soft_delete_is_off(tf, bucket):
    body = tf.resources("google_storage_bucket")[bucket]
    assert one(body["soft_delete_policy"])["retention_duration_seconds"] == 0


def test_builds_run_as_the_build_account_with_only_build_rights(tf):
    f = _function_resource(tf)
    build = one(f["build_config"])
    assert build["service_account"] == "${google_service_account.build.id}"
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
    assert "${google_storage_bucket_iam_member.build_reads_source}" in f["depends_on"], (
        "functions may build before their account can read"
    )
    grants = set()
    for rtype, name, body in tf.all_resources():
        if rtype.endswith("_iam_member") and "google_service_account.build." in str(body.get("member")):
            target = body.get("bucket") or body.get("repository") or body.get("project")
            grants.add((unquote(body["role"]), target))
    assert grants == {
        ("roles/logging.logWriter", "${var.project}"),
        ("roles/storage.objectViewer", "${google_storage_bucket.source.name}"),
        ("roles/artifactregistry.writer", "${google_artifact_registry_repository.functions.name}"),
        ("roles/artifactregistry.writer", "${google_artifact_registry_repository.renderer.name}"),
    }, grants


def test_image_builds_run_as_the_build_account_with_a_timeout():
    build = (ROOT / "renderer_image" / "cloudbuild.yaml").read_text()  # no YAML parser in the venv
    m = re.search(r"^timeout:\s*[\"']?(\d+)s[\"']?\s*$", build, re.M)
    assert m and 600 < int(m.group(1)) <= 3600, (
        "cloudbuild.yaml: a top-level timeout above the 10 min default, at most 1 h"
    )
    assert re.search(r"^options:\n(?:  .*\n)*?  logging: CLOUD_LOGGING_ONLY$", build, re.M), (
        "required with a user-specified account"
    )
    makefile = (ROOT / "Makefile").read_text()
    image = makefile[makefile.index("\nimage:") : makefile.index("\ndeploy:")]
    submit = image[image.index("gcloud builds submit") :]
    assert '--service-account "$$sa"' in submit and "output -raw build_service_account" in image
    assert (
        "--gcs-source-staging-dir" in submit and "/cloudbuild/" in submit
    )  # read by the build account, expired by lifecycle


def test_pubsub_agent_exists_before_it_is_granted(tf):
    identity = tf.resources("google_project_service_identity")["pubsub"]
    assert unquote(identity["service"]) == "pubsub.googleapis.com"
    assert identity["provider"].removeprefix("${").removesuffix("}") == "google-beta"
    assert (
        unquote(tf.locals()["pubsub_service_agent"]) == "serviceAccount:${google_project_service_identity.pubsub.email}"
    )
    granted = [
        n
        for t, n, b in tf.all_resources()
        if t.endswith("_iam_member") and "pubsub_service_agent" in str(b.get("member"))
    ]
    assert len(granted) == 3, granted
    assert "gcp-sa-pubsub" not in "".join(tf.text.values()), "the agent's email comes from the service identity"


def test_results_trigger_region_follows_the_bucket(tf):
    assert "results_bucket_location" not in tf.variables()
    data = {
        k: v
        for b in tf.blocks("data")
        for t, named in b.items()
        if unquote(t) == "google_storage_bucket"
        for k, v in named.items()
    }
    results = data['"results"']
    assert results["name"] == "${var.results_bucket}"
    assert results["count"] == "${var.create_results_bucket ? 0 : 1}"
    loc = tf.locals()["results_bucket_location"]
    assert (
        "data.google_storage_bucket.results[0].location" in loc and "google_storage_bucket.results[0].location" in loc
    )
    fin = _functions(tf)["on_results_finalized"]["trigger"]
    assert fin["region"] == "${local.results_bucket_location}"


# --- variables from a file --------------------------------------------------------------------

EXAMPLE_TFVARS = ROOT / "terraform" / "example.tfvars"
MAKE_SETS = {"project", "region", "renderer_image", "results_bucket"}


def test_example_tfvars_sets_declared_variables(tf):
    import hcl2

    values = hcl2.loads(EXAMPLE_TFVARS.read_text())
    values = {k: v for k, v in values.items() if not k.startswith("__")}
    variables = tf.variables()
    assert values, "terraform/example.tfvars sets nothing"
    unknown = set(values) - set(variables)
    assert not unknown, f"example.tfvars sets undeclared variables: {unknown}"
    assert not (set(values) & MAKE_SETS), "make deploy passes these itself (-var after -var-file wins)"
    assert isinstance(values["site_viewers"], list) and values["site_viewers"], "the list example is the point"


def test_make_deploy_passes_the_var_file(tmp_path):
    make = shutil.which("make")
    assert make
    proc = subprocess.run(
        [
            make,
            "-n",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "deploy",
            "PROJECT=p",
            "RESULTS_BUCKET=b",
            "TF_VAR_FILE=terraform/example.tfvars",
            "IMAGE=img",
            "MAKE=true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    applies = [line for line in proc.stdout.splitlines() if " apply " in line]
    assert len(applies) == 2, proc.stdout
    for line in applies:
        assert f"-var-file={EXAMPLE_TFVARS}" in line, line
        # -var-file first: the -var make sets override a file that also sets them
        assert line.index("-var-file=") < line.index("-var project=p"), line
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "TF_VAR_FILE=" in docs and "TF_EXTRA_VARS" not in docs


# --- the functions come from one definition (issue 15) ----------------------------------------

FUNCTION_BLOCK = re.compile(r'^\s*resource\s+"google_cloudfunctions2_function"\s', re.M)
FUNCTIONS_FOR_EACH = "${local.functions}"
INVOKERS_FOR_EACH = "${{for k, f in google_cloudfunctions2_function.this : k => f.name}}"  # python-hcl2's spelling


def test_functions_come_from_one_definition(tf):
    """One google_cloudfunctions2_function block in terraform/ (local modules included), iterating
    over local.functions: a function is added as an entry, not as a copy of the resource."""
    blocks = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in sorted((ROOT / "terraform").rglob("*.tf"))
        if ".terraform" not in path.parts
        for text in [path.read_text()]
        for m in FUNCTION_BLOCK.finditer(text)
    ]
    assert len(blocks) == 1, (
        f"{FUNCTION} defined {len(blocks)} times, add an entry to local.functions instead: {blocks}"
    )
    assert _function_resource(tf)["for_each"] == "${local.functions}"


def test_every_handler_has_its_function_entry(tf):
    """Every @functions_framework.cloud_event handler of functions/main.py has exactly one entry in
    local.functions with that entry point, and every entry runs a handler. The one exception the
    platform forces: a gen2 function has one trigger, so a handler that follows several event types
    (rebuild_toc) has one entry per event type, "<handler>_<event>", alike in everything else."""
    handlers = cloud_event_handlers(MAIN)
    assert handlers, "no @functions_framework.cloud_event handler found in functions/main.py"
    by_entry_point: dict[str, dict[str, dict]] = {}
    for name, f in _functions(tf).items():
        by_entry_point.setdefault(unquote(f["entry_point"]), {})[name] = f
    assert set(by_entry_point) == handlers, (
        f"handlers without an entry: {sorted(handlers - set(by_entry_point))}; "
        f"entries without a handler: {sorted(set(by_entry_point) - handlers)}"
    )
    for entry_point, entries in by_entry_point.items():
        if len(entries) == 1:
            assert list(entries) == [entry_point], f"the entry of {entry_point} is called {list(entries)}"
            continue
        events = [unquote(f["trigger"]["event_type"]) for f in entries.values() if f["trigger"]]
        assert len(events) == len(set(events)) == len(entries), f"{entry_point}: not one entry per event type: {events}"
        for name, f in entries.items():
            event = unquote(f["trigger"]["event_type"]).rsplit(".", 1)[-1]
            assert name == f"{entry_point}_{event}", f"{name}: an entry of {entry_point} is named {entry_point}_{event}"

        def rest(f):  # what must be alike: everything but the description and the event type (comments aside)
            return {k: v for k, v in f.items() if k not in ("description", "trigger") and not k.startswith("__")} | {
                "trigger": {k: v for k, v in f["trigger"].items() if k != "event_type" and not k.startswith("__")}
            }

        alike = {repr(rest(f)) for f in entries.values()}
        assert len(alike) == 1, f"the entries of {entry_point} differ beyond their event type"


def test_every_setting_in_the_map_reaches_the_resource(tf):
    """An entry's setting that the resource never reads would be silently ignored."""
    text = tf.text["functions.tf"]
    resource = text[FUNCTION_BLOCK.search(text).start() :]
    read = set(re.findall(r"each\.value\.(\w+)", resource))
    trigger_read = set(re.findall(r"event_trigger\.value\.(\w+)", resource))
    for name, f in _functions(tf).items():
        settings = {k for k in f if not k.startswith("__")}
        assert settings == read, f"{name}: settings {sorted(settings)}, the resource reads {sorted(read)}"
        if f["trigger"]:
            trig = {k for k in f["trigger"] if not k.startswith("__")}
            assert trig <= trigger_read, f"{name}: trigger settings {sorted(trig - trigger_read)} are not read"
    # the Cloud Function's name is its key: partybal-<key with dashes> (docs/deploy.md lists them)
    assert unquote(_function_resource(tf)["name"]) == '${var.name_prefix}-${replace(each.key, "_", "-")}'


def test_the_events_account_may_invoke_every_function_and_only_those(tf):
    invokers = tf.resources("google_cloud_run_v2_service_iam_member")
    assert set(invokers) == {"events_invoke"}, "one invoker binding per function, from one definition"
    inv = invokers["events_invoke"]
    assert inv["for_each"] == INVOKERS_FOR_EACH
    assert inv["name"] == "${each.value}" and unquote(inv["role"]) == "roles/run.invoker"
    assert inv["member"] == "${google_service_account.events.member}"


# What deployments applied before the functions came from one definition hold in their state, and
# the Cloud Function each address is (its name under the default name_prefix).
DEPLOYED_BEFORE_ONE_DEFINITION = {
    "google_cloudfunctions2_function.on_results_finalized": "partybal-on-results-finalized",
    "google_cloudfunctions2_function.dispatch_render": "partybal-dispatch-render",
    'google_cloudfunctions2_function.rebuild_toc["finalized"]': "partybal-rebuild-toc-finalized",
    'google_cloudfunctions2_function.rebuild_toc["deleted"]': "partybal-rebuild-toc-deleted",
    "google_cloudfunctions2_function.sweep_pending": "partybal-sweep-pending",
    "google_cloudfunctions2_function.snapshot_experimenter": "partybal-snapshot-experimenter",
    'google_cloud_run_v2_service_iam_member.events_invoke["on_results_finalized"]': "partybal-on-results-finalized",
    'google_cloud_run_v2_service_iam_member.events_invoke["dispatch_render"]': "partybal-dispatch-render",
    'google_cloud_run_v2_service_iam_member.events_invoke["rebuild_toc_finalized"]': "partybal-rebuild-toc-finalized",
    'google_cloud_run_v2_service_iam_member.events_invoke["rebuild_toc_deleted"]': "partybal-rebuild-toc-deleted",
    "google_cloud_run_v2_service_iam_member.events_invoke_sweep": "partybal-sweep-pending",
    "google_cloud_run_v2_service_iam_member.events_invoke_experimenter": "partybal-snapshot-experimenter",
}
STAND_IN_TYPES = ("google_cloudfunctions2_function", "google_cloud_run_v2_service_iam_member")
_ADDRESS = re.compile(r'^(\w+)\.(\w+)(\["[\w-]+"\])?$')


def _stand_in(address: str) -> str:
    """google_x.name["k"] -> terraform_data.google_x__name["k"]: terraform's built-in resource,
    which plans without provider downloads, under a name that keeps the type."""
    m = _ADDRESS.match(address)
    assert m and m.group(1) in STAND_IN_TYPES, address
    return f"terraform_data.{m.group(1)}__{m.group(2)}{m.group(3) or ''}"


def _terraform_in(module, *args, check=True):
    terraform = shutil.which("terraform")
    if not terraform:
        unavailable("terraform is missing: install the terraform CLI")
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    proc = subprocess.run(
        [terraform, *args, "-no-color"], cwd=module, capture_output=True, text=True, timeout=300, env=env
    )
    assert not check or proc.returncode == 0, f"terraform {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc


def test_moved_blocks_keep_the_deployed_functions(tf, tmp_path):
    """A deployment applied with the old addresses plans no destroy and no create: every function
    and invoker binding moves to its entry of the one definition, and to the instance that has the
    same Cloud Function name (a different name would replace the function). Shown with terraform
    itself on stand-ins (terraform_data keyed like the real resources, triggers_replace = the
    function's name expression from functions.tf, the moved blocks of terraform/ rewritten)."""
    import json

    name_expr = unquote(_function_resource(tf)["name"])
    assert "each.key" in name_expr
    keys = sorted(_functions(tf))
    prefix = 'variable "name_prefix" {\n  type    = string\n  default = "partybal"\n}\n'

    old = tmp_path / "old"
    old.mkdir()
    grouped: dict[str, dict] = {}
    for address, fn_name in DEPLOYED_BEFORE_ONE_DEFINITION.items():
        m = re.match(r'^(terraform_data\.\w+)(?:\["([\w-]+)"\])?$', _stand_in(address))
        grouped.setdefault(m.group(1), {})[m.group(2)] = fn_name
    blocks = []
    for res, instances in grouped.items():
        label = res.split(".", 1)[1]
        if list(instances) == [None]:
            blocks.append(f'resource "terraform_data" "{label}" {{\n  triggers_replace = "{instances[None]}"\n}}\n')
        else:
            blocks.append(
                f'resource "terraform_data" "{label}" {{\n  for_each = {json.dumps(instances)}\n'
                "  triggers_replace = each.value\n}\n"
            )
    (old / "main.tf").write_text("\n".join(blocks))
    _terraform_in(old, "init", "-input=false", "-backend=false")
    _terraform_in(old, "apply", "-input=false", "-auto-approve")

    new = tmp_path / "new"
    new.mkdir()
    blocks = [prefix, f"locals {{\n  keys = toset({json.dumps(keys)})\n}}\n"]
    for rtype in STAND_IN_TYPES:
        for label, body in tf.resources(rtype).items():
            assert body.get("for_each") in (FUNCTIONS_FOR_EACH, INVOKERS_FOR_EACH), (
                f"{rtype}.{label}: a stand-in for for_each = {body.get('for_each')} is not written yet"
            )
            blocks.append(
                f'resource "terraform_data" "{rtype}__{label}" {{\n  for_each = local.keys\n'
                f'  triggers_replace = "{name_expr}"\n}}\n'
            )
    for moved in tf.blocks("moved"):
        frm, to = (unquote(moved[k]).removeprefix("${").removesuffix("}") for k in ("from", "to"))
        blocks.append(f"moved {{\n  from = {_stand_in(frm)}\n  to   = {_stand_in(to)}\n}}\n")
    (new / "main.tf").write_text("\n".join(blocks))
    (old / "terraform.tfstate").replace(new / "terraform.tfstate")
    _terraform_in(new, "init", "-input=false", "-backend=false")
    _terraform_in(new, "plan", "-input=false", "-out=plan")
    plan = json.loads(_terraform_in(new, "show", "-json", "plan").stdout)

    changes = {c["address"]: c for c in plan.get("resource_changes", [])}
    not_kept = {a: c["change"]["actions"] for a, c in changes.items() if c["change"]["actions"] != ["no-op"]}
    assert not not_kept, f"an existing deployment would see these changes (create/delete/replace): {not_kept}"
    came_from = {c.get("previous_address", a): a for a, c in changes.items()}
    lost = sorted(a for a in DEPLOYED_BEFORE_ONE_DEFINITION if _stand_in(a) not in came_from)
    assert not lost, f"no moved block for {lost}: terraform would destroy them and create the new addresses"


def test_job_size_takes_only_what_cloud_run_takes(tf, tmp_path):
    """job_cpu: Cloud Run's vCPU values for a job (R draws on every one, render.default_cores);
    job_memory: a whole number of Mi or Gi. A wrong value fails at plan, not at apply."""
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    limits = one(one(one(job["template"])["template"])["containers"])["resources"]
    assert one(limits)["limits"] == {"cpu": "${var.job_cpu}", "memory": "${var.job_memory}"}
    for name, value, ok in (
        ("job_cpu", "4", True),
        ("job_cpu", "8", True),
        ("job_cpu", "3", False),
        ("job_cpu", "16", False),
        ("job_memory", "4Gi", True),
        ("job_memory", "512Mi", True),
        ("job_memory", "4G", False),
        ("job_memory", "0Gi", False),
    ):
        accepted, err = _terraform_accepts(tmp_path, name, value)
        assert accepted is ok, f"{name}={value}: accepted={accepted}\n{err}"


def _job_size_ok(tmp_path, cpu: str, memory: str) -> str:
    """terraform's own value of local.job_size_ok (run.tf, the renderer job's precondition) for
    job_cpu/job_memory: the two variable blocks and the locals block, in `terraform console`."""
    run_tf = (ROOT / "terraform" / "run.tf").read_text()
    m = re.search(r"^locals \{\n  job_memory_mib = .*?^\}\n", run_tf, re.M | re.S)
    assert m, "run.tf has no job-size locals block"
    text = _variable_block("job_cpu") + _variable_block("job_memory") + m.group(0)
    run = _terraform_module(tmp_path / f"size-{cpu}-{memory}", text)
    out = run("console", f"-var=job_cpu={cpu}", f"-var=job_memory={memory}", stdin="local.job_size_ok\n")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_job_memory_must_fit_its_vcpus_before_apply(tf, tmp_path):
    """Cloud Run's memory range per job vCPU count, checked by a precondition on the job."""
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    (pre,) = one(job["lifecycle"])["precondition"]
    assert pre["condition"] == "${local.job_size_ok}"
    defaults = {k: unquote(tf.variables()[k]["default"]) for k in ("job_cpu", "job_memory")}
    assert defaults == {"job_cpu": "4", "job_memory": "4Gi"}
    cases = {
        ("4", "4Gi"): "true",  # the defaults
        ("4", "1Gi"): "false",
        ("4", "2048Mi"): "true",
        ("8", "4Gi"): "true",
        ("8", "2Gi"): "false",
        ("1", "8Gi"): "false",
        ("2", "8Gi"): "true",
        ("2", "512Mi"): "true",
    }
    got = {k: _job_size_ok(tmp_path, *k) for k in cases}
    assert got == cases

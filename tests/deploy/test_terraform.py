"""terraform/ against the code it deploys: entry points, environment contract, IAM, buckets."""

from __future__ import annotations

import re

import pytest

from .conftest import ROOT, cloud_event_handlers, contract_table, env_reads, key, one, unquote

MAIN = ROOT / "functions" / "main.py"

# Which Python modules run in which deployed component. functions/main.py is the glue of every
# function; the modules hold what each handler reads.
COMPONENT_MODULES = {
    "finalize fn": ["partybal/coalesce.py"],
    "dispatch fn": ["partybal/dispatch.py"],
    "job": ["partybal/job.py"],
    "TOC fn": ["partybal/toc.py"],
    "sweep fn": ["partybal/sweeper.py", "partybal/coalesce.py"],  # its settings are coalesce's
}
# Read by the code but legitimately unset in the cloud (local emulators, optional tuning).
LOCAL_ONLY = {"STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "RUN_API_ENDPOINT", "PARTYBAL_FAULT"}  # FAULT: tests only
# Set per execution by dispatch_render, never on the job itself.
OVERRIDES = {"PARTYBAL_SLUG", "PARTYBAL_PREFIX"}
# Set per execution by `partybal backfill` (partybal/backfill.py), never on the job itself.
BACKFILL_OVERRIDES = {"PARTYBAL_SLUGS_URI"}
CLOUD_EVENT_ENTRY_POINTS = {"on_results_finalized", "dispatch_render", "rebuild_toc", "sweep_pending"}


def _functions(tf):
    return tf.resources("google_cloudfunctions2_function")


def _env_of(tf, body) -> set[str]:
    env = one(body["service_config"])["environment_variables"]
    if isinstance(env, str):  # a reference such as ${local.toc_env}
        m = re.fullmatch(r"\$\{local\.(\w+)\}", env)
        assert m, f"cannot resolve environment_variables = {env}"
        env = tf.locals()[m.group(1)]
    return set(env)


def _job_env(tf) -> set[str]:
    job = tf.resources("google_cloud_run_v2_job")["renderer"]
    container = one(one(one(job["template"])["template"])["containers"])
    return {unquote(e["name"]) for e in container.get("env", [])}


def component_env(tf) -> dict[str, set[str]]:
    fns = _functions(tf)
    return {
        "finalize fn": _env_of(tf, fns["on_results_finalized"]),
        "dispatch fn": _env_of(tf, fns["dispatch_render"]),
        "TOC fn": _env_of(tf, fns["rebuild_toc"]),
        "sweep fn": _env_of(tf, fns["sweep_pending"]),
        "job": _job_env(tf),
    }


# --- entry points -----------------------------------------------------------------------------


def test_functions_main_exists():
    assert MAIN.is_file(), "functions/main.py is missing"


def test_every_entry_point_is_a_cloud_event_handler(tf):
    handlers = cloud_event_handlers(MAIN)
    entry_points = {unquote(one(f["build_config"])["entry_point"]) for f in _functions(tf).values()}
    assert entry_points == CLOUD_EVENT_ENTRY_POINTS  # the names docs/architecture.md documents
    missing = entry_points - handlers
    assert not missing, f"entry points without a @functions_framework.cloud_event handler in functions/main.py: {missing}"


def test_functions_share_one_source_and_runtime(tf):
    for name, f in _functions(tf).items():
        build = one(f["build_config"])
        assert unquote(build["runtime"]) == "python311", name
        storage = one(one(build["source"])["storage_source"])
        assert "local.function_source" in storage["bucket"] and "local.function_source" in storage["object"], name
    obj = tf.resources("google_storage_bucket_object")["functions_source"]
    assert "output_md5" in obj["name"] or "output_sha" in obj["name"], "the source zip must be named by its hash"


def test_triggers(tf):
    fns = _functions(tf)
    fin = one(fns["on_results_finalized"]["event_trigger"])
    assert unquote(fin["event_type"]) == "google.cloud.storage.object.v1.finalized"
    assert unquote(fin["retry_policy"]) == "RETRY_POLICY_RETRY"
    assert one(fin["event_filters"])["value"] == "${local.results_bucket}"

    toc = fns["rebuild_toc"]
    assert toc["for_each"] == "${local.toc_triggers}"
    assert set(map(unquote, tf.locals()["toc_triggers"].values())) == {
        "google.cloud.storage.object.v1.finalized",
        "google.cloud.storage.object.v1.deleted",
    }
    trig = one(toc["event_trigger"])
    assert unquote(trig["retry_policy"]) == "RETRY_POLICY_RETRY"
    assert "google_storage_bucket.state" in one(trig["event_filters"])["value"]


def test_dispatch_has_bounded_retries_and_a_dead_letter_topic(tf):
    sub = tf.resources("google_pubsub_subscription")["dispatch"]
    assert "google_pubsub_topic.render_requests" in sub["topic"]
    push = one(sub["push_config"])
    assert "google_cloudfunctions2_function.dispatch_render" in push["push_endpoint"]
    assert "oidc_token" in push
    dl = one(sub["dead_letter_policy"])
    assert "google_pubsub_topic.render_dead_letter" in dl["dead_letter_topic"]
    attempts = tf.variables()["dispatch_max_delivery_attempts"]
    assert dl["max_delivery_attempts"] == "${var.dispatch_max_delivery_attempts}"
    assert 5 <= attempts["default"] <= 100
    # dead-lettered messages are kept somewhere (docs/reliability.md: which failure goes where)
    assert "google_pubsub_topic.render_dead_letter" in tf.resources("google_pubsub_subscription")["render_dead_letter"]["topic"]


# --- environment contract ---------------------------------------------------------------------


def test_every_contract_variable_read_by_the_code_is_documented():
    table = contract_table()
    read = set()
    for path in [MAIN, *(ROOT / "partybal").glob("*.py")]:
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
        path = ROOT / rel
        assert path.is_file(), f"{rel} is missing"
        reads |= env_reads(path)
    needed = {v for v in reads if v in table} - LOCAL_ONLY
    assert needed, f"no contract variable found in {COMPONENT_MODULES[component]}: is the scan broken?"
    missing = needed - env
    assert not missing, f"{component} reads {missing} but terraform does not set it"


def test_docs_table_is_honoured(tf):
    table = contract_table()
    envs = component_env(tf)
    for var, used_by in table.items():
        if var in LOCAL_ONLY or "locally" in used_by:
            continue
        users = list(envs) if used_by.strip() == "all" else [u.strip() for u in used_by.split(",")]
        for user in users:
            have = envs[user] | (OVERRIDES | BACKFILL_OVERRIDES if user == "job" else set())
            assert var in have, f"docs/architecture.md says {user} uses {var}; terraform does not set it"


def test_render_topic_and_run_job_are_full_resource_names(tf):
    fns = _functions(tf)
    fin = one(fns["on_results_finalized"]["service_config"])["environment_variables"]
    assert fin["RENDER_TOPIC"] == "${local.render_topic}"
    assert tf.locals()["render_topic"] == "${google_pubsub_topic.render_requests.id}"  # projects/P/topics/T
    disp = one(fns["dispatch_render"]["service_config"])["environment_variables"]
    assert disp["RUN_JOB"] == "${local.run_job}"
    assert tf.locals()["run_job"] == "${google_cloud_run_v2_job.renderer.id}"  # projects/P/locations/L/jobs/J


def test_job_env_matches_dispatch_overrides(tf):
    dispatch_src = (ROOT / "partybal" / "dispatch.py").read_text()
    overridden = set(re.findall(r"EnvVar\(\s*name\s*=\s*[\"']([A-Z_]+)[\"']", dispatch_src))
    assert overridden == OVERRIDES, f"dispatch.py overrides {overridden}"
    job_reads = env_reads(ROOT / "partybal" / "job.py")
    assert overridden <= job_reads, "the job must read what the dispatcher overrides"
    job_env = _job_env(tf)
    assert not (job_env & overridden), "PARTYBAL_SLUG/PARTYBAL_PREFIX must be left to per-execution overrides"
    assert {"RESULTS_BUCKET", "SITE_BUCKET", "STATE_BUCKET", "GOOGLE_CLOUD_PROJECT"} <= job_env


def test_job_env_matches_backfill_overrides(tf):
    src = (ROOT / "partybal" / "backfill.py").read_text()
    overridden = set(re.findall(r"EnvVar\(\s*name\s*=\s*[\"']([A-Z_]+)[\"']", src))
    assert overridden == BACKFILL_OVERRIDES, f"backfill.py overrides {overridden}"
    assert overridden <= env_reads(ROOT / "partybal" / "job.py"), "the job must read what the backfill overrides"
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


def test_no_project_level_grants_to_partybal_accounts_except_event_receiver(tf):
    for name, body in tf.resources("google_project_iam_member").items():
        role = unquote(body["role"])
        assert role in {"roles/eventarc.eventReceiver", "roles/pubsub.publisher"}, f"{name}: {role} at project level"
        if role == "roles/pubsub.publisher":
            assert "gcs_service_agent" in body["member"], "only the GCS service agent publishes project-wide"


def _grants(tf, rtype):
    return [(n, b) for n, b in tf.resources(rtype).items()]


def test_dispatcher_may_run_the_job_with_overrides_and_act_as_its_account(tf):
    job_grants = _grants(tf, "google_cloud_run_v2_job_iam_member")
    assert any(
        unquote(b["role"]) == "roles/run.jobsExecutorWithOverrides" and "service_account.dispatch" in b["member"]
        for _, b in job_grants
    )
    sa_grants = _grants(tf, "google_service_account_iam_member")
    assert any(
        unquote(b["role"]) == "roles/iam.serviceAccountUser"
        and "service_account.job" in b["service_account_id"]
        and "service_account.dispatch" in b["member"]
        for _, b in sa_grants
    )


def test_components_have_their_own_accounts(tf):
    fns = _functions(tf)
    accounts = {
        n: one(f["service_config"])["service_account_email"] for n, f in fns.items()
    }
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
    terraform = one(tf.blocks("terraform"))
    assert ">= 1.5" in unquote(terraform["required_version"])
    providers = one(terraform["required_providers"])
    assert re.fullmatch(r"~> \d+\.\d+", unquote(providers["google"]["version"]))
    assert "archive" in providers


def test_sweeper_is_scheduled_on_its_own_topic(tf):
    """sweep_pending (docs/reliability.md): Cloud Scheduler → its topic → the function, which
    re-publishes render requests as its own least-privilege account."""
    fn = _functions(tf)["sweep_pending"]
    trig = one(fn["event_trigger"])
    assert unquote(trig["event_type"]) == "google.cloud.pubsub.topic.v1.messagePublished"
    assert "google_pubsub_topic.sweep" in trig["pubsub_topic"]
    job = tf.resources("google_cloud_scheduler_job")["sweep"]
    assert "google_pubsub_topic.sweep" in one(job["pubsub_target"])["topic_name"]
    env = one(fn["service_config"])["environment_variables"]
    assert env["RENDER_TOPIC"] == "${local.render_topic}"
    publishers = [b for b in tf.resources("google_pubsub_topic_iam_member").values() if "service_account.sweeper" in b["member"]]
    assert [unquote(b["role"]) for b in publishers] == ["roles/pubsub.publisher"]
    assert all("google_pubsub_topic.render_requests" in b["topic"] for b in publishers)
    writes = [b for b in tf.resources("google_storage_bucket_iam_member").values() if "service_account.sweeper" in b["member"] and unquote(b["role"]) != "roles/storage.objectViewer"]
    assert writes and all(_condition(tf, b) == MARKERS_ONLY for b in writes), "the sweeper may write pending markers only"
    # it asks Cloud Run whether a marker's execution still runs: read-only, on the renderer job only
    viewers = [b for b in tf.resources("google_cloud_run_v2_job_iam_member").values() if "service_account.sweeper" in b["member"]]
    assert [(unquote(b["role"]), b["name"]) for b in viewers] == [("roles/run.viewer", "${google_cloud_run_v2_job.renderer.name}")]


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
        b for b in tf.resources("google_storage_bucket_iam_member").values()
        if f"service_account.{account}." in b["member"] and "google_storage_bucket.state" in b["bucket"]
        and unquote(b["role"]) != "roles/storage.objectViewer"
    ]
    assert writes, f"{account} writes no markers"
    assert all(_condition(tf, b) == MARKERS_ONLY for b in writes), f"{account} may write more than pending markers"

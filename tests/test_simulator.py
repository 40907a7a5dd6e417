"""The simulated fine-tuning API, over real loopback sockets."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ftlog.cli.simulate import simulate
from ftlog.simulator import (
    FaultRule,
    Hyperparameters,
    JobSpec,
    ManualClock,
    ScaledClock,
    SimulatedAPI,
    make_jobs,
    parse_faults,
    serve_in_thread,
    step_metrics,
)

TOKEN = "sim-token-5e1f"
T0 = 1_700_000_000
# With JobSpec's defaults: validating 60 s, queued 120 s, 100 steps of 1000 tokens at 100 tokens/s.
STARTED = T0 + 180
FINISHED = STARTED + 1000

Connect = Callable[..., httpx.Client]


def spec(**fields: Any) -> JobSpec:
    return JobSpec(**{"id": "ftjob-a", "created_at": T0, **fields})


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Serve an API on a free port and return a client for it (closed after the test)."""
    with contextlib.ExitStack() as stack:

        def connect(api: SimulatedAPI, token: str | None = TOKEN, **options: Any) -> httpx.Client:
            url = stack.enter_context(serve_in_thread(api))
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client = httpx.Client(base_url=url, headers=headers, **options)
            return stack.enter_context(client)

        yield connect


def stats_url(client: httpx.Client) -> str:
    return str(client.base_url).removesuffix("/v1/") + "/_sim/stats"


def all_pages(client: httpx.Client, path: str, limit: int) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        body = client.get(path, params=params).json()
        pages.append(body["data"])
        if not body["has_more"]:
            return pages
        params["after"] = body["data"][-1]["id"]


# --- Jobs through their life ----------------------------------------------------------------


def test_a_job_goes_through_its_life(connect: Connect) -> None:
    clock = ManualClock(T0 - 1)
    client = connect(SimulatedAPI([spec()], clock=clock))
    assert client.get("/fine_tuning/jobs/ftjob-a").status_code == 404  # not created yet
    assert client.get("/fine_tuning/jobs").json()["data"] == []

    statuses: list[str] = []
    tokens: list[int] = []
    for t in range(T0, FINISHED + 100, 50):
        clock.set(t)
        job = client.get("/fine_tuning/jobs/ftjob-a").json()
        if not statuses or statuses[-1] != job["status"]:
            statuses.append(job["status"])
        if job["status"] == "running":
            assert job["finished_at"] is None
            assert job["estimated_finish"] is not None
            tokens.append(job["trained_tokens"])
        elif job["status"] in ("validating_files", "queued"):
            assert job["trained_tokens"] is None and job["estimated_finish"] is None

    assert statuses == ["validating_files", "queued", "running", "succeeded"]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert all(isinstance(n, int) for n in tokens)
    assert job["finished_at"] == FINISHED
    assert (job["trained_tokens"], job["trained_steps"], job["total_steps"]) == (100_000, 100, 100)
    assert job["result_files"] and job["error"] is None and job["estimated_finish"] is None


def test_the_estimate_is_a_little_off() -> None:
    job = SimulatedAPI([spec(estimate_skew=0.05)], clock=ManualClock(STARTED + 10))
    body = json.loads(job.handle("/v1/fine_tuning/jobs/ftjob-a", "Bearer x").body)
    assert body["estimated_finish"] == FINISHED + 50


def test_failed_and_cancelled_jobs_stop_part_way(connect: Connect) -> None:
    failed = spec(id="ftjob-f", outcome="failed", stop_fraction=0.5, error_code="out_of_memory")
    cancelled = spec(id="ftjob-c", outcome="cancelled", stop_fraction=0.25)
    client = connect(SimulatedAPI([failed, cancelled], clock=ManualClock(FINISHED)))

    job = client.get("/fine_tuning/jobs/ftjob-f").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "out_of_memory" and job["error"]["message"]
    assert (job["trained_steps"], job["finished_at"]) == (50, STARTED + 500)
    assert job["result_files"] == []

    job = client.get("/fine_tuning/jobs/ftjob-c").json()
    assert (job["status"], job["error"], job["trained_steps"]) == ("cancelled", None, 25)


def test_the_job_object_has_the_nebius_shape(connect: Connect) -> None:
    job_spec = spec(wandb_project="proj", suffix="sql", validation_file="file-v")
    job = connect(SimulatedAPI([job_spec], clock=ManualClock(T0))).get("/fine_tuning/jobs/ftjob-a")
    body = job.json()
    assert set(body) == {
        "id", "object", "created_at", "error", "finished_at", "hyperparameters", "integrations",
        "model", "organization_id", "result_files", "seed", "suffix", "status", "trained_tokens",
        "training_file", "validation_file", "estimated_finish", "trained_steps", "total_steps",
    }  # fmt: skip
    assert body["object"] == "fine_tuning.job" and body["organization_id"] == ""
    assert set(body["hyperparameters"]) == {
        "batch_size", "learning_rate", "n_epochs", "warmup_ratio", "weight_decay", "lora",
        "lora_r", "lora_alpha", "lora_dropout", "packing", "max_grad_norm", "context_length",
    }  # fmt: skip
    assert body["integrations"][0]["wandb"]["project"] == "proj"
    assert job.headers["content-type"] == "application/json"


def test_the_openai_flavor(connect: Connect) -> None:
    clock = ManualClock(T0 + 100)
    client = connect(SimulatedAPI([spec(flavor="openai", suffix="sql")], clock=clock))
    queued = client.get("/fine_tuning/jobs/ftjob-a").json()
    assert set(queued["hyperparameters"].values()) == {"auto"}
    assert queued["fine_tuned_model"] is None and "trained_steps" not in queued

    clock.set(STARTED + 500)  # running, half way through its 100,000 tokens
    running = client.get("/fine_tuning/jobs/ftjob-a").json()
    assert running["status"] == "running" and running["trained_tokens"] is None
    assert "total_steps" not in running

    clock.set(FINISHED)
    done = client.get("/fine_tuning/jobs/ftjob-a").json()
    assert done["method"]["type"] == "supervised"
    assert done["method"]["supervised"]["hyperparameters"]["batch_size"] == 8
    assert done["fine_tuned_model"].startswith("ft:") and done["user_provided_suffix"] == "sql"
    assert done["trained_tokens"] == 100 * 1000  # the final value, once it has ended


def test_make_jobs_varies_the_jobs() -> None:
    jobs = make_jobs(1000, seed=3, start=T0)
    assert jobs == make_jobs(1000, seed=3, start=T0)
    outcomes = [job.outcome for job in jobs]
    assert 50 < outcomes.count("failed") < 150 and 20 < outcomes.count("cancelled") < 80
    assert len({job.model for job in jobs}) >= 4
    assert len({job.hyperparameters.learning_rate for job in jobs}) >= 3
    assert {job.hyperparameters.lora for job in jobs} == {True, False}
    assert [job.created_at for job in jobs] == sorted(job.created_at for job in jobs)
    assert all(job.id.startswith("ftjob-") for job in jobs)


def test_clocks() -> None:
    clock = ManualClock(10)
    clock.advance(5)
    assert clock.now() == 15
    clock.set(3)
    assert clock.now() == 3
    scaled = ScaledClock(start=1000, speed=1000)
    assert 1000 <= scaled.now() < 1000 + 1000  # less than a real second has passed
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(speed=0)


def test_touch_changes_the_next_answer(connect: Connect) -> None:
    api = SimulatedAPI([spec(), spec(id="ftjob-b")], clock=ManualClock(FINISHED))
    client = connect(api)
    before = client.get("/fine_tuning/jobs").json()["data"]
    api.touch(["ftjob-a"])
    after = client.get("/fine_tuning/jobs").json()["data"]
    assert [job["id"] for job in after] == [job["id"] for job in before]
    changed = {job["id"] for job, old in zip(after, before, strict=True) if job != old}
    assert changed == {"ftjob-a"}

    api.touch(["ftjob-b"], total_steps=200)
    job = client.get("/fine_tuning/jobs/ftjob-b").json()
    assert (job["status"], job["total_steps"]) == ("running", 200)
    with pytest.raises(ValueError, match="created_at"):
        api.touch(["ftjob-a"], created_at=0)


def test_touch_control_changes_the_newest_jobs(connect: Connect) -> None:
    api = SimulatedAPI([spec(), spec(id="ftjob-b", created_at=T0 + 1)], clock=ManualClock(FINISHED))
    client = connect(api)
    before = {job["id"]: job for job in client.get("/fine_tuning/jobs").json()["data"]}
    control = str(client.base_url).removesuffix("/v1/") + "/_sim/touch"
    answer = httpx.post(control, params={"n": 1})
    assert answer.status_code == 200 and answer.json() == {"touched": ["ftjob-b"]}
    after = {job["id"]: job for job in client.get("/fine_tuning/jobs").json()["data"]}
    assert after["ftjob-a"] == before["ftjob-a"] and after["ftjob-b"] != before["ftjob-b"]
    assert httpx.post(control, params={"n": "x"}).status_code == 400
    assert httpx.post(control.replace("touch", "nothing")).status_code == 404
    assert client.post("/fine_tuning/jobs").status_code == 404  # no POST on the API itself


# --- Listing --------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [60, 0], ids=["spread", "all-created-together"])
def test_paging_lists_every_job_once_newest_first(connect: Connect, spacing: int) -> None:
    jobs = make_jobs(250, seed=1, start=T0, spacing=spacing)
    client = connect(SimulatedAPI(jobs, clock=ManualClock(T0 + 10**6)))
    pages = all_pages(client, "/fine_tuning/jobs", limit=100)

    assert [len(page) for page in pages] == [100, 100, 50]
    listed = [(job["created_at"], job["id"]) for page in pages for job in page]
    assert listed == sorted(((job.created_at, job.id) for job in jobs), reverse=True)
    assert len(client.get("/fine_tuning/jobs").json()["data"]) == 20  # the default limit


def test_jobs_appear_when_created(connect: Connect) -> None:
    jobs = make_jobs(10, seed=2, start=T0, spacing=100)
    clock = ManualClock(jobs[4].created_at)
    client = connect(SimulatedAPI(jobs, clock=clock))
    listed = [job["id"] for job in client.get("/fine_tuning/jobs").json()["data"]]
    assert listed == [job.id for job in reversed(jobs[:5])]
    assert client.get(f"/fine_tuning/jobs/{jobs[5].id}").status_code == 404


@pytest.mark.parametrize(
    "params", [{"limit": 101}, {"limit": 0}, {"limit": "ten"}, {"after": "ftjob-nope"}]
)
def test_bad_list_parameters_are_400(connect: Connect, params: dict[str, Any]) -> None:
    client = connect(SimulatedAPI([spec()], clock=ManualClock(T0)))
    response = client.get("/fine_tuning/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_an_unknown_job_is_404(connect: Connect) -> None:
    client = connect(SimulatedAPI([spec()], clock=ManualClock(T0)))
    for path in ("/fine_tuning/jobs/ftjob-nope", "/fine_tuning/jobs/ftjob-nope/events"):
        response = client.get(path)
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
        assert "ftjob-nope" in error["message"]


# --- Events and checkpoints -----------------------------------------------------------------


def test_events_page_newest_first_with_falling_losses(connect: Connect) -> None:
    clock = ManualClock(FINISHED)
    client = connect(SimulatedAPI([spec()], clock=clock))
    pages = all_pages(client, "/fine_tuning/jobs/ftjob-a/events", limit=4)
    events = [event for page in pages for event in page]

    assert [len(page) for page in pages] == [4, 4, 4, 3]  # 4 before training, 10 metrics, 1 end
    assert len({event["id"] for event in events}) == 15
    assert [e["created_at"] for e in events] == sorted(
        (e["created_at"] for e in events), reverse=True
    )
    assert events[0]["message"] == "The job has successfully completed"
    assert events[-1]["message"].startswith("Created fine-tuning job")
    assert {event["object"] for event in events} == {"fine_tuning.job.event"}
    metrics = [event["data"] for event in reversed(events) if event["type"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(10, 101, 10))
    losses = [m["train_loss"] for m in metrics]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)

    clock.set(STARTED)
    visible = client.get("/fine_tuning/jobs/ftjob-a/events").json()["data"]
    assert visible[0]["message"] == "Fine-tuning job started" and len(visible) == 4


def test_a_failed_job_ends_with_an_error_event(connect: Connect) -> None:
    failed = spec(outcome="failed", stop_fraction=0.5)
    client = connect(SimulatedAPI([failed], clock=ManualClock(FINISHED)))
    newest = client.get("/fine_tuning/jobs/ftjob-a/events", params={"limit": 1}).json()
    assert newest["data"][0]["level"] == "error" and newest["has_more"]


def test_checkpoints_page_newest_first_with_falling_losses(connect: Connect) -> None:
    three_epochs = spec(total_steps=90, hyperparameters=Hyperparameters(n_epochs=3))
    client = connect(SimulatedAPI([three_epochs], clock=ManualClock(T0 + 10**5)))
    pages = all_pages(client, "/fine_tuning/jobs/ftjob-a/checkpoints", limit=2)

    assert [[c["step_number"] for c in page] for page in pages] == [[90, 60], [30]]
    checkpoints = [c for page in reversed(pages) for c in reversed(page)]
    for name in ("train_loss", "valid_loss", "full_valid_loss"):
        losses = [c["metrics"][name] for c in checkpoints]
        assert losses == sorted(losses, reverse=True), name
    first = checkpoints[0]
    assert (first["object"], first["fine_tuning_job_id"]) == (
        "fine_tuning.job.checkpoint",
        "ftjob-a",
    )
    assert first["fine_tuned_model_checkpoint"].endswith(":ckpt-step-30")


def test_a_higher_learning_rate_lowers_the_loss_sooner() -> None:
    slow = spec(hyperparameters=Hyperparameters(learning_rate=1e-5))
    fast = spec(hyperparameters=Hyperparameters(learning_rate=1e-4))
    assert step_metrics(fast, 30)["train_loss"] < step_metrics(slow, 30)["train_loss"] - 0.3


# --- Auth, faults, stats --------------------------------------------------------------------


def test_a_required_token_is_checked_and_never_echoed(connect: Connect) -> None:
    api = SimulatedAPI([spec()], clock=ManualClock(T0), token=TOKEN)
    assert connect(api).get("/fine_tuning/jobs").status_code == 200

    wrong = connect(api, token="sk-wrong-9a9a").get("/fine_tuning/jobs")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "Invalid API key"
    assert "sk-wrong-9a9a" not in wrong.text

    assert connect(api, token=None).get("/fine_tuning/jobs").status_code == 401


def test_without_a_required_token_any_bearer_token_is_accepted(connect: Connect) -> None:
    client = connect(SimulatedAPI([spec()], clock=ManualClock(T0)), token="anything")
    assert client.get("/fine_tuning/jobs").status_code == 200
    basic = client.get("/fine_tuning/jobs", headers={"Authorization": "Basic dXNlcg=="})
    assert basic.status_code == 401


def faulty(connect: Connect, faults: str, **options: Any) -> httpx.Client:
    return connect(SimulatedAPI([spec()], clock=ManualClock(T0), faults=faults), **options)


def test_429_first_n_with_retry_after(connect: Connect) -> None:
    client = faulty(connect, "429:first=2:0")
    responses = [client.get("/fine_tuning/jobs") for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["Retry-After"] == "0"
    assert responses[0].json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_every_n(connect: Connect, status: int) -> None:
    client = faulty(connect, f"{status}:every=2")
    codes = [client.get("/fine_tuning/jobs/ftjob-a").status_code for _ in range(4)]
    assert codes == [200, status, 200, status]


def test_slow_answers_trip_client_timeouts(connect: Connect) -> None:
    client = faulty(connect, "slow:first=1:0.5", timeout=0.1)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/fine_tuning/jobs")
    assert client.get("/fine_tuning/jobs").status_code == 200


def test_malformed_answers_are_cut_json(connect: Connect) -> None:
    client = faulty(connect, "malformed:first=1")
    response = client.get("/fine_tuning/jobs/ftjob-a")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert client.get("/fine_tuning/jobs/ftjob-a").json()["id"] == "ftjob-a"


def test_reset_closes_the_connection_without_an_answer(connect: Connect) -> None:
    client = faulty(connect, "reset:first=1")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get("/fine_tuning/jobs")
    assert client.get("/fine_tuning/jobs").status_code == 200


def test_missing_drops_a_required_field_from_jobs(connect: Connect) -> None:
    client = faulty(connect, "missing:first=2")
    assert "status" not in client.get("/fine_tuning/jobs/ftjob-a").json()
    assert "status" not in client.get("/fine_tuning/jobs").json()["data"][0]
    assert "status" in client.get("/fine_tuning/jobs/ftjob-a").json()


def test_faults_count_only_authorized_requests_and_spare_stats(connect: Connect) -> None:
    api = SimulatedAPI([spec()], clock=ManualClock(T0), faults="500:first=1,503:1", token=TOKEN)
    assert connect(api, token="wrong").get("/fine_tuning/jobs").status_code == 401
    client = connect(api)
    assert client.get("/fine_tuning/jobs").status_code == 500
    assert client.get("/fine_tuning/jobs").status_code == 503
    assert client.get(stats_url(client)).status_code == 200
    assert api.stats.faults == {"500": 1, "503": 1}


def test_random_faults_are_reproducible_with_a_seed() -> None:
    def statuses(seed: int) -> list[int]:
        api = SimulatedAPI([spec()], clock=ManualClock(T0), seed=seed, faults="429:0.3,500:0.2")
        return [api.handle("/v1/fine_tuning/jobs", "Bearer x").status for _ in range(300)]

    first = statuses(seed=7)
    assert first == statuses(seed=7) and first != statuses(seed=8)
    assert 60 < first.count(429) < 120 and 30 < first.count(500) < 90


def test_parse_faults_grammar() -> None:
    assert parse_faults("429:0.1,500:every=4,slow:first=1:3") == (
        FaultRule("429", probability=0.1, arg=1.0),
        FaultRule("500", every=4),
        FaultRule("slow", first=1, arg=3.0),
    )
    assert parse_faults("") == ()


@pytest.mark.parametrize(
    ("spec_text", "message"),
    [
        ("teapot:0.1", "unknown fault kind 'teapot'"),
        ("500:1.5", "bad fault '500:1.5'"),
        ("500:sometimes", "bad fault"),
        ("500:first=0", "bad fault"),
        ("500:last=2", "bad fault"),
        ("slow:0.1:-1", "bad fault"),
        ("500:0.1:2", "takes no argument"),
        ("429:0.6,500:0.6", "add up to more than 1"),
    ],
)
def test_parse_faults_rejects_bad_specs(spec_text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_faults(spec_text)
    assert "\n" not in str(caught.value)


def test_stats_count_requests_by_route(connect: Connect) -> None:
    api = SimulatedAPI([spec()], clock=ManualClock(T0))
    client = connect(api)
    client.get("/fine_tuning/jobs")
    client.get("/fine_tuning/jobs/ftjob-a")
    client.get("/fine_tuning/jobs/ftjob-a/events")
    client.get("/fine_tuning/jobs/ftjob-a/checkpoints")
    client.get("/nowhere")

    stats = httpx.get(stats_url(client)).json()  # no token needed
    assert stats["requests"] == 5 == api.stats.requests
    assert stats["by_path"] == {
        "/v1/fine_tuning/jobs": 1,
        "/v1/fine_tuning/jobs/{job_id}": 1,
        "/v1/fine_tuning/jobs/{job_id}/events": 1,
        "/v1/fine_tuning/jobs/{job_id}/checkpoints": 1,
        "other": 1,
    }
    assert stats["by_path"] == api.stats.by_path


# --- The command ----------------------------------------------------------------------------


def test_the_command_serves_until_terminated() -> None:
    command = "from ftlog.cli.simulate import simulate; simulate()"
    args = ["--port", "0", "--jobs", "6", "--token", TOKEN, "--speed", "1"]
    with subprocess.Popen(
        [sys.executable, "-c", command, *args], stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            banner = process.stderr.readline() if process.stderr else ""
            assert banner.startswith("ftlog simulate: serving 6 jobs at http://127.0.0.1:")
            url = banner.split(" at ")[1].split()[0]
            response = httpx.get(
                f"{url}/fine_tuning/jobs", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert response.status_code == 200 and response.json()["object"] == "list"
        finally:
            process.terminate()
        rest = process.stderr.read() if process.stderr else ""
    assert process.returncode == 0
    assert "Traceback" not in rest


def test_the_command_can_stop_the_clock_after_every_job_finished() -> None:
    command = "from ftlog.cli.simulate import simulate; simulate()"
    args = ["--port", "0", "--jobs", "5", "--at-end"]
    with subprocess.Popen(
        [sys.executable, "-c", command, *args], stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            banner = process.stderr.readline() if process.stderr else ""
            assert "clock stopped after every job finished" in banner
            url = banner.split(" at ")[1].split()[0]
            headers = {"Authorization": "Bearer any"}
            jobs = httpx.get(f"{url}/fine_tuning/jobs", headers=headers).json()["data"]
            assert len(jobs) == 5
            assert {job["status"] for job in jobs} <= {"succeeded", "failed", "cancelled"}
        finally:
            process.terminate()


def test_the_command_rejects_a_bad_fault_spec() -> None:
    result = CliRunner().invoke(simulate, ["--faults", "500:often"])
    assert result.exit_code == 2
    assert "--faults" in result.output and "bad fault" in result.output

"""The console's HTTP API against real PostgreSQL and Kafka: logins, claims, verdicts as labels, bad input."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from console_harness import (
    ConsoleRun,
    form_request_id,
    insert_flagged,
    login,
    new_console_run,
    read_topic,
)
from fastapi.testclient import TestClient
from local_engine_harness import private_model_state

from fraudstream.config import Settings
from fraudstream.console import auth, cases
from fraudstream.console.app import create_app
from fraudstream.console.server import prepare
from fraudstream.events.contract import validate_label
from fraudstream.model.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> ConsoleRun:
    """One console, labels topic and set of users for the module; each test has its own transactions."""
    return new_console_run(services, tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def app(run: ConsoleRun):
    """The app with its lifespan entered once (pool, producer); tests talk to it through plain TestClients."""
    served = create_app(run.settings)
    with TestClient(served):
        yield served


@pytest.fixture
def prefix(run: ConsoleRun) -> str:
    return f"{run.prefix}{uuid.uuid4().hex[:6]}-"


def _labels_sent(run: ConsoleRun, transaction_id: str, expected: int) -> list[dict]:
    values = read_topic(run.settings, run.settings.labels_topic, expected)
    return [m for m in map(orjson.loads, values) if m["transaction_id"] == transaction_id]


def _client(app, run: ConsoleRun, name: str) -> tuple[TestClient, str]:
    client = TestClient(app)
    return client, login(client, run.user(name))


@pytest.fixture(scope="module")
def clients(app, run: ConsoleRun) -> dict[str, tuple[TestClient, str]]:
    return {name: _client(app, run, name) for name in ("alice", "bob", "root")}  # a cookie jar each


def _verdict(client: TestClient, csrf: str, transaction_id: str, verdict: str, request_id: str | None = None,
             **extra: str):
    data = {"verdict": verdict, "request_id": request_id or str(uuid.uuid4()), "csrf_token": csrf, "note": "", **extra}
    return client.post(f"/cases/{transaction_id}/verdict", data=data, headers={"Accept": "application/json"})


def test_every_page_and_api_needs_a_login(app) -> None:
    client = TestClient(app)
    for path in ("/", "/queue", "/models", "/transactions/x"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    assert client.get("/queue", headers={"Accept": "application/json"}).status_code == 401
    assert client.get("/api/overview/stream").status_code == 401
    assert client.post("/cases/x/claim", data={"csrf_token": "x"}).status_code == 401
    assert client.post("/cases/x/verdict", data={"verdict": "fraud"}).status_code == 401
    assert client.get("/static/htmx.min.js").status_code == 200  # assets are public, served locally


def test_login_needs_the_right_password_and_its_csrf_token(app, run: ConsoleRun) -> None:
    client = TestClient(app)
    page = client.get("/login")
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=strict" in page.headers["set-cookie"]
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    wrong = client.post("/login", data={"username": run.user("alice"), "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    fresh = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    forged = client.post("/login", data={"username": run.user("alice"), "password": "correct horse battery",
                                         "csrf_token": fresh + "x"})
    assert forged.status_code == 403
    csrf = login(client, run.user("alice"))
    cookie = [v for k, v in client.cookies.items() if k == "fraudstream_session"]
    assert cookie and csrf
    assert client.get("/queue").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_claim_locks_a_case_and_a_verdict_becomes_one_label_in_the_table_and_on_the_topic(
        run: ConsoleRun, clients, database: psycopg.Connection, prefix: str) -> None:
    (alice, alice_csrf), (bob, bob_csrf) = clients["alice"], clients["bob"]
    [case] = insert_flagged(database, prefix, 1)
    claimed = alice.post(f"/cases/{case}/claim", headers={"X-CSRF-Token": alice_csrf, "Accept": "application/json"})
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == run.user("alice")
    locked = bob.post(f"/cases/{case}/claim", headers={"X-CSRF-Token": bob_csrf, "Accept": "application/json"})
    assert locked.status_code == 409 and run.user("alice") in locked.json()["detail"]
    assert _verdict(bob, bob_csrf, case, "fraud").status_code == 409
    assert f"Claimed by <strong>{run.user('alice')}" in bob.get(f"/transactions/{case}").text

    request_id = form_request_id(alice, case)
    first = _verdict(alice, alice_csrf, case, "fraud", request_id, note="card reported stolen")
    again = _verdict(alice, alice_csrf, case, "fraud", request_id)  # a double click / retry
    assert first.status_code == 200 and not first.json()["repeated"]
    assert again.status_code == 200 and again.json()["repeated"]
    assert again.json()["verdict_id"] == first.json()["verdict_id"]

    label = database.execute("SELECT is_fraud, source, analyst_id, merchant_id FROM labels WHERE transaction_id = %s",
                             (case,)).fetchone()
    alice_id = database.execute("SELECT user_id FROM console_users WHERE username = %s",
                                (run.user("alice"),)).fetchone()[0]
    assert label == (True, "analyst", alice_id, "m-console")
    assert database.execute("SELECT count(*) FROM verdicts WHERE transaction_id = %s", (case,)).fetchone()[0] == 1
    messages = _labels_sent(run, case, 1)
    assert len(messages) == 1
    assert messages[0]["transaction_id"] == case and messages[0]["is_fraud"] is True
    assert messages[0]["source"] == "analyst" and messages[0]["analyst_id"] == str(alice_id)
    validate_label(messages[0])  # the engines' own check: an analyst label is never a dead letter
    # the case is worked: out of the queue, claim released
    queue = alice.get("/queue", params={"merchant_id": "m-console"}, headers={"Accept": "application/json"}).json()
    assert case not in [row["transaction_id"] for row in queue["rows"]]
    assert database.execute("SELECT count(*) FROM case_claims WHERE transaction_id = %s", (case,)).fetchone()[0] == 0


def test_a_later_verdict_wins_and_the_audit_trail_keeps_both(run: ConsoleRun, clients, database: psycopg.Connection,
                                                              prefix: str) -> None:
    (alice, alice_csrf), (bob, bob_csrf) = clients["alice"], clients["bob"]
    [case] = insert_flagged(database, prefix, 1)
    assert _verdict(alice, alice_csrf, case, "fraud").status_code == 200
    assert _verdict(bob, bob_csrf, case, "legitimate", note="customer confirmed").status_code == 200
    assert database.execute("SELECT is_fraud FROM labels WHERE transaction_id = %s", (case,)).fetchone()[0] is False
    trail = alice.get(f"/transactions/{case}", headers={"Accept": "application/json"}).json()["verdicts"]
    assert [(v["username"], v["verdict"]) for v in trail] == [(run.user("alice"), "fraud"),
                                                               (run.user("bob"), "legitimate")]
    assert [m["is_fraud"] for m in _labels_sent(run, case, 2)] == [True, False]


def test_escalate_writes_no_label_and_keeps_the_case_in_the_queue(run: ConsoleRun, clients,
                                                                    database: psycopg.Connection, prefix: str) -> None:
    alice, csrf = clients["alice"]
    [case] = insert_flagged(database, prefix, 1, merchant_id=f"m-{prefix}")
    assert _verdict(alice, csrf, case, "escalate").status_code == 200
    assert database.execute("SELECT count(*) FROM labels WHERE transaction_id = %s", (case,)).fetchone()[0] == 0
    rows = alice.get("/queue", params={"merchant_id": f"m-{prefix}"}, headers={"Accept": "application/json"}).json()
    assert [(row["transaction_id"], row["escalated"]) for row in rows["rows"]] == [(case, True)]


def test_bad_input_gets_a_clear_answer_and_changes_nothing(run: ConsoleRun, clients,
                                                            database: psycopg.Connection, prefix: str) -> None:
    alice, csrf = clients["alice"]
    [case] = insert_flagged(database, prefix, 1)
    json = {"Accept": "application/json"}
    assert _verdict(alice, csrf, f"{prefix}missing", "fraud").status_code == 404
    assert alice.get(f"/transactions/{run.prefix}missing").status_code == 404
    malformed = _verdict(alice, csrf, case, "maybe")
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["field"] == "verdict"
    assert _verdict(alice, csrf, case, "fraud", request_id="not-a-uuid").status_code == 422
    assert _verdict(alice, csrf, case, "fraud", note="x" * 2001).status_code == 422
    no_csrf = alice.post(f"/cases/{case}/verdict", data={"verdict": "fraud", "request_id": str(uuid.uuid4())},
                         headers=json)
    assert no_csrf.status_code == 403
    assert _verdict(alice, csrf + "x", case, "fraud").status_code == 403
    assert alice.post(f"/cases/{case}/claim", headers=json).status_code == 403
    assert alice.get("/queue", params={"cursor": "garbage"}, headers=json).status_code == 422
    assert alice.get("/queue", params={"min_amount": "lots"}, headers=json).status_code == 422
    assert alice.post("/models/v0001/promote", data={"csrf_token": csrf}, headers=json).status_code == 403
    assert database.execute("SELECT count(*) FROM verdicts WHERE transaction_id LIKE %s",
                            (prefix + "%",)).fetchone()[0] == 0
    assert database.execute("SELECT count(*) FROM case_claims WHERE transaction_id LIKE %s",
                            (prefix + "%",)).fetchone()[0] == 0


def test_verdicts_are_rate_limited_per_user(app, run: ConsoleRun, clients, database: psycopg.Connection,
                                            prefix: str) -> None:
    (alice, alice_csrf), (bob, bob_csrf) = clients["alice"], clients["bob"]
    first, second, third = insert_flagged(database, prefix, 3)
    limiter = app.state.console.limiter
    limiter.limit, limiter._times = 1, {}
    try:
        assert _verdict(alice, alice_csrf, first, "escalate").status_code == 200
        assert _verdict(alice, alice_csrf, second, "escalate").status_code == 429
        assert _verdict(bob, bob_csrf, third, "escalate").status_code == 200  # per user
    finally:
        limiter.limit, limiter._times = run.settings.console_verdicts_per_minute, {}


def test_queue_pages_by_keyset_in_both_orders_with_filters(database: psycopg.Connection, prefix: str) -> None:
    merchant = f"m-{prefix}"
    ids = insert_flagged(database, prefix, 7, merchant_id=merchant)
    insert_flagged(database, prefix + "blk-", 2, merchant_id=merchant, decision="block")
    for order in ("newest", "score"):
        seen, cursor = [], None
        while True:
            page = cases.queue_page(database, cases.QueueFilter(order=order, merchant_id=merchant, decision="review"),
                                    cursor, limit=3)
            seen += [row["transaction_id"] for row in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ids[::-1], order  # later rows have later times and higher scores
    cheap = cases.queue_page(database, cases.QueueFilter(merchant_id=merchant, max_amount=12.0))
    assert sorted(row["transaction_id"] for row in cheap.rows) == sorted(
        [*ids[:3], f"{prefix}blk-0000", f"{prefix}blk-0001"])
    with pytest.raises(cases.BadRequest):
        cases.queue_page(database, cases.QueueFilter(order="score"), cases.encode_cursor(
            {"event_time": page.rows[0]["event_time"], "transaction_id": "x"}, "newest"))


def test_models_page_promotes_for_admins_only(app, run: ConsoleRun, clients) -> None:
    root, csrf = clients["root"]
    missing = root.post("/models/v9999/promote", data={"csrf_token": csrf}, headers={"Accept": "application/json"})
    assert missing.status_code == 404
    assert root.get("/models").status_code == 200


def test_first_start_creates_admin_with_a_random_password_kept_0600(services: Settings, scratch_url: str,
                                                                   tmp_path: Path) -> None:
    settings = services.model_copy(update={"database_url": scratch_url, "state_dir": tmp_path,
                                           "console_admin_password": ""})
    password = prepare(settings)
    saved = tmp_path / "console-admin-password"
    assert password and len(password) >= 20 and saved.read_text().strip() == password
    assert saved.stat().st_mode & 0o777 == 0o600
    assert prepare(settings) is None  # printed once: the second start creates nobody
    with psycopg.connect(scratch_url, autocommit=True) as connection:
        assert auth.login(connection, "admin", password, 1.0).user.is_admin
        assert auth.login(connection, "admin", "admin", 1.0) is None
        stored = connection.execute("SELECT password_hash FROM console_users").fetchone()[0]
    assert stored.startswith("$argon2id$") and password not in stored


def test_an_admin_promotes_a_version_through_the_registry(services: Settings, tmp_path: Path) -> None:
    state = private_model_state(services, tmp_path / "state")
    registry = Registry(state / "models")
    before = registry.production_version()
    artifact = registry.load(before)
    after = registry.publish(artifact.booster, artifact.manifest)
    run = new_console_run(services, state, users=(("root", "admin"), ("alice", "analyst")))
    with TestClient(create_app(run.settings)) as client:
        analyst_csrf = login(client, run.user("alice"))
        page = client.get("/models").text
        assert f"<code>{after}</code>" in page and "Promote" not in page  # analysts see no promote action
        denied = client.post(f"/models/{after}/promote", data={"csrf_token": analyst_csrf})
        assert denied.status_code == 403 and registry.production_version() == before
        client.cookies.clear()
        csrf = login(client, run.user("root"))
        assert 'class="promote"' in client.get("/models").text
        done = client.post(f"/models/{after}/promote", data={"csrf_token": csrf}, follow_redirects=False)
        assert done.status_code == 303 and registry.production_version() == after

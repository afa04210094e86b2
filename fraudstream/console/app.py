"""The console's routes: login, overview (with its event stream), queue, claims, verdicts, transactions, models.

Every page and API needs a session; every POST needs the session's CSRF token (form field ``csrf_token``
or header ``X-CSRF-Token``). Browsers get pages and redirects; a client that asks for JSON
(``Accept: application/json``) gets JSON, errors included (``{"detail": ...}`` with the status).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import psycopg
from fastapi import Depends, FastAPI, Form, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.console import auth, cases, pages
from fraudstream.console.aggregates import label_outcomes
from fraudstream.console.overview import OverviewHub, OverviewReader
from fraudstream.model.exceptions import ModelError
from fraudstream.model.registry import Registry
from fraudstream.monitoring.refresh import refresh_every
from fraudstream.store.model_events import ModelEvent, record_model_event

log = logging.getLogger(__name__)

SESSION_COOKIE = "fraudstream_session"
#: How often the console folds new rows into the monitoring rollups (keeps the views' live part small).
ROLLUP_REFRESH_S = 30.0
LOGIN_CSRF_COOKIE = "fraudstream_login_csrf"
_PACKAGE = resources.files("fraudstream.console")
#: Pages load only this app's own files (no CDN, no inline script).
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


class NotLoggedIn(Exception):
    """Raised by the session dependency; answered with a redirect to the login page or a 401."""


class ConsoleState:
    """What the routes share: the database pool, the label producer, the verdict limiter, the overview hub."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ConnectionPool(settings.database_url, min_size=1, max_size=8, open=False,
                                   kwargs={"autocommit": True}, name="console", configure=configure_session)
        self.producer = kafka.producer(settings, **{"linger.ms": 0})
        self.limiter = cases.RateLimiter(settings.console_verdicts_per_minute)
        self.registry = Registry(settings.models_dir)
        self.reader = OverviewReader(settings, self.pool)
        self.hub = OverviewHub(self.reader, settings.console_overview_interval_s)

    def close(self) -> None:
        self.reader.close()
        self.producer.flush(5)
        self.pool.close()


def configure_session(connection: psycopg.Connection) -> None:
    """Every time on the pages is UTC, whatever the server's default zone; and no JIT: the console sends small
    queries, and a plan whose estimate crosses jit_above_cost spends more CPU compiling than running."""
    connection.execute("SET TIME ZONE 'UTC'")
    connection.execute("SET jit = off")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def current_session(request: Request) -> auth.Session:
    """The request's live session; NotLoggedIn otherwise."""
    state: ConsoleState = request.app.state.console
    with state.pool.connection() as connection:
        session = auth.session_for(connection, request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotLoggedIn()
    request.state.session = session
    return session


async def checked_session(request: Request) -> auth.Session:
    """The session of a state-changing request whose CSRF token matches; 403 otherwise."""
    session = await run_in_threadpool(current_session, request)
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        given = (await request.form()).get("csrf_token")
    if not auth.tokens_match(session.csrf_token, given if isinstance(given, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return session


Viewer = Annotated[auth.Session, Depends(current_session)]
Actor = Annotated[auth.Session, Depends(checked_session)]


def create_app(settings: Settings) -> FastAPI:
    """The console as an ASGI app (``fraudstream console`` serves it with uvicorn)."""
    state = ConsoleState(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.pool.open(wait=True, timeout=30)
        # the views' rollups kept current beside the overview loop (a long first refresh must not hold the
        # first snapshot back); safe next to the `services up monitoring` refresher
        stop_refresh = threading.Event()
        refresher = threading.Thread(target=refresh_every, name="console-rollups", daemon=True,
                                     args=(settings.database_url, ROLLUP_REFRESH_S, stop_refresh))
        refresher.start()
        try:
            yield
        finally:
            stop_refresh.set()
            state.close()

    app = FastAPI(title="fraudstream console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = state
    templates = Jinja2Templates(directory=str(_PACKAGE.joinpath("templates")))
    templates.env.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
    templates.env.filters["num"] = lambda v, digits=0: "–" if v is None else f"{v:,.{digits}f}"
    templates.env.filters["time"] = lambda v: "–" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")
    app.mount("/static", StaticFiles(directory=str(_PACKAGE.joinpath("static"))), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def error_response(request: Request, status: int, detail: Any) -> Response:
        if _wants_json(request) or request.url.path.startswith("/api/") or request.headers.get("hx-request"):
            return JSONResponse({"detail": detail}, status_code=status)
        session = getattr(request.state, "session", None)
        return render(request, "error.html", {"status": status, "detail": detail, "session": session}, status)

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, _error: NotLoggedIn) -> Response:
        if request.method == "GET" and not _wants_json(request) and not request.url.path.startswith("/api/"):
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return JSONResponse({"detail": "not logged in"}, status_code=401)

    @app.exception_handler(cases.CaseError)
    async def case_error(request: Request, error: cases.CaseError) -> Response:
        return error_response(request, error.status, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return error_response(request, error.status_code, error.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        detail = [{"field": ".".join(str(p) for p in e["loc"][1:]), "problem": e["msg"]} for e in error.errors()]
        return error_response(request, 422, detail)

    # --- login ---------------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = render(request, "login.html", {"csrf_token": token, "next": _safe_next(next), "error": None})
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
        return response

    @app.post("/login")
    def login(request: Request, username: Annotated[str, Form(max_length=64)],
              password: Annotated[str, Form(max_length=1024)], csrf_token: Annotated[str, Form()],
              next: Annotated[str, Form()] = "/") -> Response:
        if not auth.tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the login page")
        with state.pool.connection() as connection:
            session = auth.login(connection, username, password, settings.console_session_hours)
        if session is None:
            log.info("console login failed username=%s", username[:64])
            token = secrets.token_urlsafe(32)
            response = render(request, "login.html", {"csrf_token": token, "next": _safe_next(next),
                                                      "error": "wrong username or password"}, 401)
            response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
            return response
        log.info("console login user=%s", session.user.username)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict",
                            max_age=int(settings.console_session_hours * 3600))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout")
    def logout(session: Actor) -> Response:
        with state.pool.connection() as connection:
            auth.logout(connection, session.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # --- overview ------------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def overview_page(request: Request, session: Viewer) -> HTMLResponse:
        return render(request, "overview.html", {"session": session, "page": "overview"})

    @app.get("/api/overview/stream")
    async def overview_stream(request: Request, session: Viewer) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            async for snapshot in state.hub.subscribe():
                if await request.is_disconnected():
                    break
                yield b"event: overview\ndata: " + snapshot + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # --- queue ---------------------------------------------------------------------------------------------
    @app.get("/queue", response_class=HTMLResponse)
    def queue(request: Request, session: Viewer,
              order: Literal["newest", "score"] = "newest",
              decision: Literal["review", "block", ""] = "",
              channel: Annotated[str, Query(max_length=64)] = "",
              country: Annotated[str, Query(max_length=64)] = "",
              merchant_id: Annotated[str, Query(max_length=64)] = "",
              model_version: Annotated[str, Query(max_length=64)] = "",
              min_amount: Annotated[str, Query(max_length=32)] = "",
              max_amount: Annotated[str, Query(max_length=32)] = "",
              since: Annotated[str, Query(max_length=40)] = "",
              until: Annotated[str, Query(max_length=40)] = "",
              cursor: Annotated[str, Query(max_length=512)] = "") -> Response:
        filters = cases.QueueFilter(order=order, decision=decision or None, channel=channel or None,
                                    country=country or None, merchant_id=merchant_id or None,
                                    model_version=model_version or None,
                                    min_amount=_amount("min_amount", min_amount),
                                    max_amount=_amount("max_amount", max_amount),
                                    since=_utc_time("since", since), until=_utc_time("until", until))
        with state.pool.connection() as connection:
            page = cases.queue_page(connection, filters, cursor or None)
        query = {key: value for key, value in request.query_params.items() if key != "cursor" and value}
        next_url = f"/queue?{urlencode({**query, 'cursor': page.next_cursor})}" if page.next_cursor else None
        if _wants_json(request):
            return JSONResponse({"rows": [_jsonable(row) for row in page.rows], "next_cursor": page.next_cursor})
        partial = request.headers.get("hx-request") == "true" and bool(cursor)
        return render(request, "queue_rows.html" if partial else "queue.html",
                      {"session": session, "page": "queue", "rows": page.rows, "next_url": next_url,
                       "filters": filters, "query": query})

    # --- claims and verdicts -------------------------------------------------------------------------------
    def case_done(request: Request, transaction_id: str, body: dict[str, Any], status_code: int = 200) -> Response:
        if _wants_json(request) or request.headers.get("hx-request") == "true":
            return JSONResponse(body, status_code=status_code)
        return RedirectResponse(f"/transactions/{quote(transaction_id)}", status_code=303)

    @app.post("/cases/{transaction_id}/claim")
    def claim(request: Request, transaction_id: str, session: Actor) -> Response:
        with state.pool.connection() as connection:
            taken = cases.claim(connection, transaction_id, session.user.user_id, session.user.username,
                                settings.console_claim_minutes)
        log.info("case claimed transaction_id=%s user=%s", transaction_id, session.user.username)
        return case_done(request, transaction_id, {"transaction_id": transaction_id, "claimed_by": taken.username,
                                                   "expires_at": taken.expires_at.isoformat()})

    @app.post("/cases/{transaction_id}/release")
    def release(request: Request, transaction_id: str, session: Actor) -> Response:
        with state.pool.connection() as connection:
            released = cases.release(connection, transaction_id, session.user.user_id)
        return case_done(request, transaction_id, {"transaction_id": transaction_id, "released": released})

    @app.post("/cases/{transaction_id}/verdict")
    def verdict(request: Request, transaction_id: str, session: Actor,
                verdict: Annotated[Literal["fraud", "legitimate", "escalate"], Form()],
                request_id: Annotated[uuid.UUID, Form()],
                note: Annotated[str, Form(max_length=2000)] = "") -> Response:
        if not state.limiter.allow(session.user.user_id):
            raise HTTPException(429, f"more than {settings.console_verdicts_per_minute} verdicts a minute; wait a bit")
        with state.pool.connection() as connection:
            result = cases.give_verdict(connection, state.producer, settings.labels_topic, transaction_id,
                                        session.user.user_id, verdict, note.replace("\x00", ""), str(request_id),
                                        settings.console_claim_minutes)
        log.info("verdict transaction_id=%s verdict=%s user=%s repeated=%s", transaction_id, result.verdict,
                 session.user.username, result.repeated)
        return case_done(request, transaction_id, {
            "transaction_id": transaction_id, "verdict_id": result.verdict_id, "verdict": result.verdict,
            "repeated": result.repeated,
            "labeled_at": result.labeled_at.isoformat() if result.labeled_at else None})

    # --- transaction and models ----------------------------------------------------------------------------
    @app.get("/transactions/{transaction_id}", response_class=HTMLResponse)
    def transaction(request: Request, transaction_id: Annotated[str, Path(max_length=64)],
                    session: Viewer) -> Response:
        with state.pool.connection() as connection:
            view = pages.transaction_view(connection, transaction_id)
        if _wants_json(request):
            return JSONResponse(_jsonable({"transaction": view.row, "features": view.features,
                                           "label": view.label, "verdicts": view.verdicts, "claim": view.claim}))
        return render(request, "transaction.html", {"session": session, "page": "queue", "view": view,
                                                    "request_id": uuid.uuid4()})

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request, session: Viewer) -> HTMLResponse:
        with state.pool.connection() as connection:
            live = label_outcomes(connection)
        return render(request, "models.html", {"session": session, "page": "models",
                                               "models": pages.model_rows(state.registry), "live": live})

    @app.post("/models/{version}/promote")
    def promote(version: str, session: Actor) -> Response:
        if not session.user.is_admin:
            raise HTTPException(403, "only an admin can promote a model")
        before = state.registry.production_version()
        try:
            state.registry.promote(version)
        except ModelError as error:
            raise HTTPException(404, str(error)) from None
        log.info("model promoted version=%s user=%s", version, session.user.username)
        with state.pool.connection() as connection:
            record_model_event(connection, ModelEvent("promote", "promoted", before, version,
                                                      reasons=("promoted in the console",),
                                                      actor=f"console:{session.user.username}"))
        return RedirectResponse("/models", status_code=303)

    return app


def _safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no host, no protocol-relative //host)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _amount(name: str, text: str) -> float | None:
    """An optional filter amount: empty (a blank form field) is no filter; anything else a number >= 0."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise cases.BadRequest(f"{name} must be a number, got {text[:20]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise cases.BadRequest(f"{name} must be a finite number >= 0")
    return value


def _utc_time(name: str, text: str) -> datetime | None:
    """An optional ISO time; one without a zone (a browser's datetime-local field) is read as UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise cases.BadRequest(f"{name} must be a time like 2026-01-31T12:00:00, got {text[:40]!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value

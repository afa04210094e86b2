"""Console users, sessions and CSRF tokens.

Passwords are stored as argon2id hashes. A session cookie carries a random token; the database keeps
only its SHA-256 and the session's CSRF token, which every state-changing request must echo. There is
no default password: the first start creates ``admin`` with the configured password or a random one
that is printed once and kept in a 0600 file under the state directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("analyst", "admin")
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD_FILE = "console-admin-password"
MIN_PASSWORD_LENGTH = 12
_USERNAME = re.compile(r"^[a-z0-9_.-]{1,64}$")
_hasher = PasswordHasher()
#: Verified against when the user does not exist, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user that cannot be created as asked; the message says what to change."""


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    token: str
    csrf_token: str
    user: User


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token (None or empty never matches)."""
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def create_user(connection: psycopg.Connection, username: str, password: str, role: str) -> User:
    """A new user; UserError names the rule a name, password or role breaks."""
    if not _USERNAME.fullmatch(username):
        raise UserError("username must be 1-64 characters of a-z, 0-9, '_', '.', '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    row = connection.execute(
        "INSERT INTO console_users (username, password_hash, role) VALUES (%s, %s, %s)"
        " ON CONFLICT (username) DO NOTHING RETURNING user_id", (username, hash_password(password), role)).fetchone()
    if row is None:
        raise UserError(f"user {username!r} already exists")
    return User(row[0], username, role)


def ensure_admin(connection: psycopg.Connection, password: str, state_dir: Path) -> str | None:
    """Create ``admin`` unless it exists; returns the generated password (to print once) or None.

    A password from the settings is used as given and not written anywhere; a generated one is also
    written to ``state_dir/console-admin-password`` with mode 0600, for a person who missed the print.
    """
    connection.execute("SELECT pg_advisory_xact_lock(hashtext('console_users'))")
    if connection.execute("SELECT EXISTS (SELECT 1 FROM console_users WHERE username = %s)",
                          (ADMIN_USERNAME,)).fetchone()[0]:
        return None
    generated = not password
    if generated:
        password = secrets.token_urlsafe(18)
    create_user(connection, ADMIN_USERNAME, password, "admin")
    if not generated:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / ADMIN_PASSWORD_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    os.chmod(path, 0o600)
    return password


def login(connection: psycopg.Connection, username: str, password: str, session_hours: float) -> Session | None:
    """A new session for valid credentials, else None (the same answer for an unknown user)."""
    row = connection.execute("SELECT user_id, password_hash, role FROM console_users WHERE username = %s",
                             (username,)).fetchone()
    if not verify_password(row[1] if row else _DUMMY_HASH, password) or row is None:
        return None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    connection.execute("DELETE FROM console_sessions WHERE expires_at < clock_timestamp()")
    connection.execute(
        "INSERT INTO console_sessions (token_sha256, user_id, csrf_token, expires_at)"
        " VALUES (%s, %s, %s, clock_timestamp() + %s)",
        (token_digest(token), row[0], csrf, timedelta(hours=session_hours)))
    return Session(token, csrf, User(row[0], username, row[2]))


def session_for(connection: psycopg.Connection, token: str | None) -> Session | None:
    """The live session a cookie token belongs to, or None."""
    if not token:
        return None
    row = connection.execute(
        "SELECT s.csrf_token, u.user_id, u.username, u.role FROM console_sessions s"
        " JOIN console_users u USING (user_id)"
        " WHERE s.token_sha256 = %s AND s.expires_at > clock_timestamp()", (token_digest(token),)).fetchone()
    return Session(token, row[0], User(row[1], row[2], row[3])) if row else None


def logout(connection: psycopg.Connection, token: str) -> None:
    connection.execute("DELETE FROM console_sessions WHERE token_sha256 = %s", (token_digest(token),))

"""Logging in and out, session cookies and CSRF protection."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from omnicanal.db import Database
from tests.console.helpers import PASSWORD, csrf_of, log_in, make_user


def test_unauthenticated_pages_redirect_to_login(app: Any) -> None:
    with TestClient(app) as client:
        for path in ("/console", "/console/customers", "/console/review", f"/console/customers/{'0' * 32}"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/login?next=")


def test_htmx_request_without_session_is_sent_to_login(app: Any) -> None:
    with TestClient(app) as client:
        response = client.get("/console/customers?q=ana", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/console/login")


def test_login_with_wrong_password_shows_an_error(app: Any, db: Database) -> None:
    email = make_user(db, role="agent")
    with TestClient(app) as client:
        token = csrf_of(client.get("/console/login").text)
        response = client.post(
            "/console/login", data={"email": email, "password": "not-the-password", "csrf_token": token}
        )
        assert response.status_code == 401
        assert "Email o contraseña incorrectos." in response.text
        assert client.get("/console/customers", follow_redirects=False).status_code == 303


def test_login_sets_a_safe_session_cookie_and_redirects_to_the_page_asked_for(app: Any, db: Database) -> None:
    email = make_user(db, role="agent")
    with TestClient(app) as client:
        first = client.get("/console/customers?q=ab", follow_redirects=False)
        next_url = first.headers["location"].split("next=", 1)[1]
        login_page = client.get(first.headers["location"])
        token = csrf_of(login_page.text)
        response = client.post(
            "/console/login",
            data={"email": email.upper(), "password": PASSWORD, "csrf_token": token, "next": "/console/customers?q=ab"},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/console/customers?q=ab"
        assert next_url.startswith("/console/customers")
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
        # The session started at login has a new CSRF token: the one from before login is worthless.
        page = client.get("/console/customers")
        assert page.status_code == 200
        assert csrf_of(page.text) != token
        assert "Test agent" in page.text


def test_login_never_redirects_off_site(app: Any, db: Database) -> None:
    email = make_user(db, role="agent")
    with TestClient(app) as client:
        token = csrf_of(client.get("/console/login").text)
        response = client.post(
            "/console/login",
            data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"},
            follow_redirects=False,
        )
    assert response.headers["location"] == "/console/inbox"  # an agent's landing page


def test_post_without_or_with_a_wrong_csrf_token_is_refused(app: Any, db: Database) -> None:
    staff = log_in(app, db, role="admin")
    missing = staff.client.post("/console/logout", follow_redirects=False)
    assert missing.status_code == 403
    wrong = staff.client.post("/console/logout", data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert wrong.status_code == 403
    assert "El formulario ha caducado" in wrong.text
    # still logged in
    assert staff.client.get("/console/customers").status_code == 200
    # the header that htmx sends works as well as the form field
    ok = staff.client.post("/console/logout", headers={"X-CSRF-Token": staff.csrf}, follow_redirects=False)
    assert ok.status_code == 303


def test_login_form_needs_its_csrf_token(app: Any, db: Database) -> None:
    email = make_user(db, role="agent")
    with TestClient(app) as client:
        client.get("/console/login")
        response = client.post("/console/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 403


def test_logout_ends_the_session(app: Any, db: Database) -> None:
    staff = log_in(app, db, role="agent")
    response = staff.post("/console/logout", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
    assert staff.client.get("/console/customers", follow_redirects=False).status_code == 303
    assert "Has cerrado la sesión." in staff.client.get("/console/login").text


def test_a_forged_session_cookie_is_ignored(app: Any) -> None:
    with TestClient(app) as client:
        client.cookies.set("omnicanal_console", "eyJ1aWQiOiJ4In0.forged.signature", path="/console")
        assert client.get("/console/customers", follow_redirects=False).status_code == 303


def test_repeated_wrong_passwords_lock_the_login_for_a_while(app: Any, db: Any) -> None:
    from omnicanal.console.security import login_throttle

    email = make_user(db, role="agent")
    with TestClient(app) as browser:
        token = csrf_of(browser.get("/console/login").text)
        attempt = {"email": email, "password": "wrong-password", "csrf_token": token}
        for _ in range(5):
            assert browser.post("/console/login", data=attempt).status_code == 401
        # even the right password waits until the lock ends
        locked = browser.post("/console/login", data={**attempt, "password": PASSWORD})
        assert locked.status_code == 429
        assert "Demasiados intentos" in locked.text
    login_throttle._locked_until.clear()

"""How the admin console answers: Jinja pages (autoescaped) with the headers every page
carries, the console's cookies, and errors as pages (the API keeps the JSON envelope)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask
import jinja2

from core import csrf
from core.errors import error_response
from functions._admin import BROWSER_COOKIE, COOKIE_PATH, CSRF_FIELD, SESSION_COOKIE, csrf_token

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSS = TEMPLATES / "admin" / "console.css"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
_jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                            undefined=jinja2.StrictUndefined)


def page(request: flask.Request, template: str, status: int = 200, **values: Any) -> flask.Response:
    """A rendered page; a browser without the console's browser cookie gets one (the CSRF
    binding, `core.csrf`), and every form on the page its token."""
    browser = request.cookies.get(BROWSER_COOKIE) or ""
    fresh = not csrf.BROWSER_ID.fullmatch(browser)
    if fresh:
        browser = csrf.new_browser_id()
    html = _jinja.get_template(f"admin/{template}").render(
        csrf_field=CSRF_FIELD, csrf_token=csrf_token(request, browser), **values)
    response = flask.Response(html, status=status, mimetype="text/html")
    response.headers.update(HEADERS)
    if fresh:
        set_cookie(request, response, BROWSER_COOKIE, browser)
    return response


def error_page(request: flask.Request, exc: BaseException) -> flask.Response:
    status, body, headers = error_response(exc)
    response = page(request, "error.html", status, code=body["error"]["code"],
                    message=body["error"]["message"])
    response.headers.update(headers)
    return response


def stylesheet() -> flask.Response:
    response = flask.Response(CSS.read_bytes(), mimetype="text/css")
    response.headers.update({**HEADERS, "Cache-Control": "public, max-age=300"})
    return response


def redirect(location: str) -> flask.Response:
    response = flask.Response(status=303, headers={"Location": location, **HEADERS})
    return response


def set_cookie(request: flask.Request, response: flask.Response, name: str, value: str,
               max_age: int | None = None) -> None:
    """HttpOnly, SameSite=Strict, Path=/admin; Secure when the browser came over https
    (directly, or through a proxy that says so: a false claim only hides the cookie)."""
    secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, secure=secure, httponly=True,
                        samesite="Strict")


def sign_in(request: flask.Request, response: flask.Response, session: str, ttl: int) -> None:
    set_cookie(request, response, SESSION_COOKIE, session, ttl or None)


def sign_out(response: flask.Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict")

"""Browser fixtures: Debian's Chromium, headless, driven by Playwright, one browser per test module."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from teams.models import Membership
from tests.conftest import unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The test machine is shared and can be loaded: pages get generous time, and no test ever sleeps instead.
PAGE_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        unavailable("Debian's chromium is not installed. Run `make setup`.")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the tests themselves are fine.
    # Scoped to the module, so later fixtures (the Celery workers' environment) do not inherit it.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page whose JavaScript errors and console errors are collected in `page.errors`."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.errors = errors
    yield page
    context.close()


def sign_in_member(page, live_server, team) -> None:
    """Give the browser the session of a new member of `team` (Django's own login, without the form)."""
    user = get_user_model().objects.create_user(f"member-of-{team.slug}", password="unused-in-tests")
    Membership.objects.create(team=team, user=user)
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])

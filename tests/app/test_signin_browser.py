"""Sign-in for real: `middo studio` with an OpenID Connect provider (oidc-provider-mock on
loopback) in .streamlit/secrets.toml, driven in headless Chromium. Signed out shows nothing of the
workspace; signing in shows the user's name and role; signing out ends the session."""

from __future__ import annotations

import pytest
from browser import chromium_page, free_port, shot, studio_server, wait_idle
from studio_helpers import seed_samples

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("browser_ready")]


def test_sign_in_against_a_loopback_provider_then_sign_out(workspace_factory, tmp_path):
    from oidc_provider_mock import User, run_server_in_thread

    ws = workspace_factory("team", access={"default_role": "none",
                                           "roles": {"cal@example.com": "curator"}})
    seed_samples(ws, 20)
    cal = User(sub="sub-cal", claims={"email": "cal@example.com", "name": "Cal Curator"})
    with run_server_in_thread(user_claims=[cal]) as provider:
        port = free_port()
        here = tmp_path / "server"  # the folder `middo studio` runs in, holding its secrets
        (here / ".streamlit").mkdir(parents=True)
        (here / ".streamlit" / "secrets.toml").write_text(f"""[auth]
redirect_uri = "http://localhost:{port}/oauth2callback"
cookie_secret = "a-long-random-cookie-secret-for-the-test-only"
client_id = "middo-studio"
client_secret = "any"
server_metadata_url = "http://localhost:{provider.server_port}/.well-known/openid-configuration"
""")
        with studio_server(ws.root, tmp_path / "studio.log", cwd=here, port=port) as url, \
                chromium_page() as page:
            url = url.replace("127.0.0.1", "localhost")  # the host the redirect URI names
            page.goto(url)
            wait_idle(page)
            page.get_by_text("Sign in to open the workspace").wait_for()
            body = page.locator("body").inner_text()
            assert str(ws.root) not in body and "Samples" not in body and "Data" not in body
            shot(page, "signin_signed_out")

            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="sub-cal").click()  # the provider's sign-in form
            page.get_by_text("Signed in as Cal Curator").wait_for(timeout=60_000)
            page.get_by_text("Samples 1–20 of 20 in D(0)").wait_for()  # the workspace, now readable
            wait_idle(page)
            body = page.locator("body").inner_text()
            assert "cal@example.com · curator" in body and str(ws.root) in body
            shot(page, "signin_signed_in")

            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="End session").click()  # the provider's sign-out form
            page.get_by_text("Sign in to open the workspace").wait_for(timeout=60_000)
            page.goto(url)  # a new visit: the session is over, not just hidden
            wait_idle(page)
            page.get_by_text("Sign in to open the workspace").wait_for()
            body = page.locator("body").inner_text()
            assert "Cal Curator" not in body and str(ws.root) not in body

"""Sign-in and roles in the Studio.

With an identity provider configured (an `[auth]` section in .streamlit/secrets.toml, read by
Streamlit's own st.login: OpenID Connect), every page needs a signed-in user and each action is
taken as that identity, whose role the workspace's middo.yaml gives (middo_core/access.py). Without
one the Studio serves loopback only, and acts as the person at the machine under the name "studio".
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from middo_core.access import ACTIONS, ROLES, AccessDenied, Actor, Identity, allowed, role
from middo_core.commands.studio import is_loopback
from middo_core.workspace import Workspace

LOCAL_ACTOR = "studio"  # decisions made on loopback without sign-in are recorded under this name


def provider_configured() -> bool:
    """An `[auth]` section in the secrets Streamlit read (.streamlit/secrets.toml)."""
    try:
        return isinstance(st.secrets.get("auth"), Mapping)
    except Exception:  # no secrets file at all
        return False


def providers() -> list[str | None]:
    """The providers to offer: None for the one configured in [auth] itself, then the named ones."""
    auth = st.secrets.get("auth") or {}
    named = [name for name, value in auth.items() if isinstance(value, Mapping)]
    return ([None] if "client_id" in auth else []) + named


def who() -> Actor:
    """The signed-in identity, or the local name when the Studio runs without sign-in."""
    if not provider_configured():
        return LOCAL_ACTOR
    user = st.user
    email = user.get("email")
    subject = user.get("sub") or email or ""
    return Identity(subject=str(subject), email=str(email) if email else None,
                    name=str(user["name"]) if user.get("name") else None)


def signed_in() -> bool:
    return provider_configured() and bool(st.user.get("is_logged_in"))


def require_sign_in() -> None:
    """Stop the page unless someone may see it: a signed-in user where a provider is configured;
    without one, only a Studio served on loopback."""
    if not provider_configured():
        address = st.get_option("server.address") or ""
        if not is_loopback(address):
            st.error(f"This Studio is served on {address or 'every address'} without sign-in. "
                     "Configure an identity provider in .streamlit/secrets.toml (docs/RELIABILITY.md, "
                     "\"Serving the Studio to a team\") or serve it on 127.0.0.1.")
            st.stop()
        return
    if st.user.get("is_logged_in"):
        return
    st.title("Middo Studio")
    st.markdown("Sign in to open the workspace.")
    for provider in providers():
        label = "Sign in" if provider is None else f"Sign in with {provider}"
        st.button(label, type="primary", key=f"sign_in_{provider or 'default'}",
                  on_click=st.login, args=(provider,) if provider else ())
    st.stop()


def require_role(ws: Workspace | None) -> None:
    """Stop the page when the signed-in user has no role in the open workspace."""
    if ws is None or not signed_in() or role(ws, who()) != "none":
        return
    identity = who()
    st.title("Middo Studio")
    st.warning(f"You are signed in as {identity.label}, which has no role in this workspace. "
               "Ask its owner to add you under access.roles in its middo.yaml.")
    render_account(ws)
    st.stop()


def denied(ws: Workspace, action: str) -> str | None:
    """Why the user may not do `action` here, in a sentence; None when they may."""
    identity = who()
    if allowed(ws, identity, action):
        return None
    return str(AccessDenied(identity, role(ws, identity), action))


def render_account(ws: Workspace | None) -> None:
    """Who is signed in, with which role, and the way out (nothing without sign-in)."""
    if not signed_in():
        return
    identity = who()
    held = role(ws, identity) if ws is not None else "none"
    st.markdown(f"Signed in as **{identity.name or identity.actor}**")
    may = [words for action, (needed, words) in ACTIONS.items()
           if action != "read" and ROLES.index(held) >= ROLES.index(needed)]
    st.caption(f"{identity.actor} · " + (f"{held}: {', '.join(may)}" if may else held if held != "none"
                                          else "no role in this workspace"))
    st.button("Sign out", key="sign_out", on_click=st.logout)

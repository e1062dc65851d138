"""Roles: who may read, review or change a workspace when the Studio is served with sign-in.

An action's caller is either a signed-in `Identity` (the Studio with an identity provider) or a
plain name (the CLI, a script, the Studio on loopback without sign-in): the person at the machine,
who acts as the owner and whose name is recorded as typed. A signed-in identity's role comes from
the workspace's `access` settings in middo.yaml, read again at every check, so a change there
takes effect at the next click without a restart.

    viewer   reads every page
    curator  also decides proposals (accept, edit, reject, in bulk) and marks verdicts on flags
    owner    also saves selections (the m's), imports data, builds versions, starts and cancels runs
"""

from __future__ import annotations

from dataclasses import dataclass

from middo_core.config import CONFIG_FILE, AccessConfig, load_config
from middo_core.workspace import Workspace

ROLES = ("none", "viewer", "curator", "owner")  # each may do what the ones before it may

# action -> (the role it needs, what it is in words)
ACTIONS: dict[str, tuple[str, str]] = {
    "read": ("viewer", "reading the workspace"),
    "decide": ("curator", "deciding proposals"),
    "verdict": ("curator", "marking verdicts on flags"),
    "select": ("owner", "saving a selection"),
    "build": ("owner", "building a dataset version"),
    "import": ("owner", "importing data"),
    "run": ("owner", "starting or cancelling background runs"),
    "map": ("curator", "computing a map"),
}
# a background run of these kinds needs the action named here; every other kind needs "run"
RUN_ACTIONS = {"projection": "map", "import": "import",
               "search_index": "read"}  # a cache of the store's texts that any search starts


@dataclass(frozen=True)
class Identity:
    """A user signed in through the identity provider (the ID token's claims)."""

    subject: str
    email: str | None = None
    name: str | None = None

    @property
    def actor(self) -> str:
        """What the audit trail records: the e-mail address, else the provider's subject."""
        return self.email or self.subject

    @property
    def label(self) -> str:
        return f"{self.name} ({self.actor})" if self.name and self.name != self.actor else self.actor


Actor = Identity | str  # a signed-in user, or the name of the person at the machine


class AccessDenied(PermissionError):
    """The signed-in identity's role does not allow the action."""

    def __init__(self, who: Identity, role: str, action: str) -> None:
        needed, words = ACTIONS[action]
        self.who, self.role, self.needed, self.action = who, role, needed, action
        has = "has no role" if role == "none" else f"is a {role}"
        super().__init__(f"{who.actor} {has} in this workspace: {words} needs the {needed} role "
                         "(roles are set under access in the workspace's middo.yaml)")


def access_config(ws: Workspace) -> AccessConfig:
    """The workspace's access settings as middo.yaml holds them now."""
    return load_config(ws.root / CONFIG_FILE).access


def role_of(config: AccessConfig, who: Identity) -> str:
    """The role of a signed-in identity: its e-mail address, then its subject, then its e-mail's
    "@domain" (each compared without case), else the default role."""
    roles = {key.lower(): role for key, role in config.roles.items()}
    email = (who.email or "").lower()
    for key in (email, who.subject.lower(), "@" + email.rpartition("@")[2] if "@" in email else ""):
        if key and key in roles:
            return roles[key]
    return config.default_role


def role(ws: Workspace, who: Actor) -> str:
    """The caller's role in this workspace (a plain name: the local user, the owner)."""
    return "owner" if isinstance(who, str) else role_of(access_config(ws), who)


def allowed(ws: Workspace, who: Actor, action: str) -> bool:
    return ROLES.index(role(ws, who)) >= ROLES.index(ACTIONS[action][0])


def check(ws: Workspace, who: Actor, action: str) -> str:
    """The name to record in the audit trail for `who` doing `action`; AccessDenied when the
    identity's role does not allow it."""
    if isinstance(who, str):
        return who
    held = role(ws, who)
    if ROLES.index(held) < ROLES.index(ACTIONS[action][0]):
        raise AccessDenied(who, held, action)
    return who.actor


def run_action(kind: str) -> str:
    """The action starting (or cancelling) a background run of `kind` counts as."""
    return RUN_ACTIONS.get(kind, "run")

"""SIGHUP: apply a re-read configuration without dropping clients or the broker link.

Reloaded: ``[[auth.tokens]]`` (added tokens work at once; a client that authenticated with a
removed token is closed with 1008 "token revoked"; a token whose role changed gives its clients the
new role), the trust store (``security.trust``: peers added or removed, their pairwise keys
forgotten), ``log.level``, and ``[[processes]]`` (added, removed and changed ones, applied like
supervisorctl's ``update``; unchanged ones keep running).  Anything else that changed needs a
restart: it is named in a warning and left as it was.  A config that does not load changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from ._config import Settings
from ._errors import CloudisenseError, ConfigError

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
#: dotted keys applied by :func:`reload` (everything else is compared and warned about)
RELOADABLE = ("auth.tokens", "security.trust", "log.level", "processes")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def not_reloadable(old: Settings, new: Settings) -> list[str]:
    """Dotted names of the settings that differ and need a restart."""
    a, b = _flat(old.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and not any(k == r or k.startswith(r + ".") for r in RELOADABLE))


def _reload_tokens(node: Any, new: Settings) -> str | None:
    gw = node.gateway
    tokens = {t.sha256: t.role for t in new.auth.tokens}
    if bool(tokens) != bool(gw.tokens):
        log.warning("reload: not applying auth.tokens: switching authentication %s needs a restart",
                    "on" if tokens else "off", extra={"reason": "not_reloadable"})
        return None
    if tokens == gw.tokens:
        return None
    added, removed = len(tokens.keys() - gw.tokens.keys()), len(gw.tokens.keys() - tokens.keys())
    gw.tokens = tokens
    node.settings.auth = new.auth
    revoked = 0
    for s in list(gw.sessions):
        sha = getattr(s, "token_sha", None)
        if sha is None or not s.authed:
            continue
        if sha not in tokens:
            revoked += 1
            s.closed = True
            gw.spawn(s.ws.close(CLOSE_POLICY, "token revoked"))
            log.info("%s: its token was removed; closing it", s.name, extra={"client": s.name,
                                                                             "reason": "token_revoked"})
        elif tokens[sha] != s.role:
            s.role = tokens[sha]
    return f"tokens: {added} added, {removed} removed" + (f", {revoked} client(s) closed" if revoked else "")


def _reload_trust(node: Any, new: Settings) -> str | None:
    old_sec, sec = node.settings.security, new.security
    if node.verifier is None or not sec.trust:
        if sec.trust != old_sec.trust:
            log.warning("reload: not applying security.trust: turning signing on or off needs a restart",
                        extra={"reason": "not_reloadable"})
        return None
    from ._signing import TrustStore
    store = TrustStore.load(sec.trust)   # ConfigError: nothing changes
    v = node.verifier
    before = set(v.trust._raw)
    v.replace_trust(store)               # pairwise MAC keys: derived again from the new keys
    node.settings.security.trust = sec.trust
    now = set(store._raw)
    if now == before:
        return None
    return f"trust store: {len(now - before)} added, {len(before - now)} removed ({len(now)} nodes)"


def _reload_log_level(new: Settings, pinned: bool) -> str | None:
    from ._logjson import level_of
    if pinned or not new.log.level:
        return None
    level = level_of(new.log.level)
    root = logging.getLogger()
    if root.level == level:
        return None
    root.setLevel(level)
    return f"log level {logging.getLevelName(level)}"


async def reload(node: Any, new: Settings, *, log_level_pinned: bool = False) -> list[str]:
    """Apply ``new`` to the running ``node``; returns what changed (also logged)."""
    done: list[str] = []
    if skipped := not_reloadable(node.settings, new):
        log.warning("reload: these settings changed but need a restart, so they are unchanged: %s",
                    ", ".join(skipped), extra={"reason": "not_reloadable"})
    try:
        if msg := _reload_log_level(new, log_level_pinned):
            done.append(msg)
    except ValueError as e:
        log.warning("reload: log.level: %s", e, extra={"reason": "bad_config"})
    if msg := _reload_tokens(node, new):
        done.append(msg)
    try:
        if msg := _reload_trust(node, new):
            done.append(msg)
    except ConfigError as e:
        log.warning("reload: trust store not changed: %s", e.message, extra={"reason": "bad_config"})
    sup = node.supervisor
    if sup is not None and [p.model_dump() for p in new.processes] != [p.model_dump() for p in
                                                                        node.settings.processes]:
        try:
            changes = await sup.update(new.processes)
        except CloudisenseError as e:
            log.warning("reload: processes not updated: %s", e.message, extra={"reason": "bad_config"})
        else:
            node.settings.processes = new.processes
            done.append("processes: " + "; ".join(f"{k} {', '.join(v)}" for k, v in changes.items() if v))
    log.info("reload: %s", "; ".join(done) if done else "nothing to change", extra={"reason": "reload"})
    return done

"""URLs of the servers and databases pytest-basht talks to: credentials split off, and the
one rule by which a URL is shown (``redact``) — every log line, report and error message
that names a URL shows it through here, never with a password."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://user:pw@host:9090/x`` -> (``http://host:9090/x``, (user, pw))."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


#: what precedes the first "//" (the scheme), then the authority's userinfo, up to its last @
_USERINFO = re.compile(r"^([^/?#]*//)([^/?#]*)@")


def _hidden(userinfo: str, keep_user: bool) -> str:
    if not keep_user:
        return "***"
    user, colon, _ = userinfo.partition(":")
    return user + (":***" if colon else "")


def redact(url: str | None, *, keep_user: bool = False) -> str | None:
    """The URL as it may be logged or reported: its user and password replaced by ***.

    ``keep_user``: only the password is replaced (``user:***@``), as a database URL is
    shown — its user names the account, which tells one store from another. Text that is
    not quite a URL (a bad port, an unclosed [, a malformed scheme) is redacted as it
    stands.
    """
    if url is None:
        return None
    return _USERINFO.sub(lambda m: f"{m.group(1)}{_hidden(m.group(2), keep_user)}@", url,
                         count=1)


def problem(url: str) -> str | None:
    """Why ``url`` is not a usable http(s) server URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "an http:// or https:// URL"
    if not parts.hostname:
        return "a URL with a host"
    return None

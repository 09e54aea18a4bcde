"""URLs of servers the energy layer talks to: credentials split off, never shown."""

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


def redact(url: str | None) -> str | None:
    """The URL as it may be logged or reported: any user and password replaced by ***."""
    if url is None:
        return None
    try:
        clean, creds = split_credentials(url)
    except ValueError:  # malformed (a bad port, an unclosed [): hide whatever precedes an @
        return re.sub(r"//[^/]*@", "//***@", url)
    if creds is None:
        return url
    parts = urlsplit(clean)
    return urlunsplit((parts.scheme, "***@" + parts.netloc, parts.path, parts.query,
                       parts.fragment))


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

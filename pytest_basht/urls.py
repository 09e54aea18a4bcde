"""URLs of the servers and databases pytest-basht talks to: credentials split off, and the
one rule by which a URL — or any text that may hold one — is shown (``redact``): every log
line, report, history entry, terminal line and error message that names a URL shows it
through here, never with a secret.

A secret can sit in a URL in three ways, and ``redact`` hides each: the userinfo
(``postgresql://user:pw@host/db``), a query or keyword parameter (libpq's
``?password=...`` and ``sslpassword=``, ``?token=``, ``api_key=``, a presigned
``X-Amz-Signature=``; also ``password=...`` in a libpq keyword/value string), and the
value of an environment variable that holds one (``PGPASSWORD``,
``BASHT_STORAGE_PASSWORD``, ``BASHT_PROMETHEUS_TOKEN``, any ``*PASSWORD``/``*TOKEN``/
``*SECRET``) wherever it appears — a URL rendered with the environment's password for a
library that then quotes it in an exception, say.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

HIDDEN = "***"
#: environment variables whose values are secrets (by the end of their name)
SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|PASSPHRASE|TOKEN|SECRET|API_?KEY)$", re.IGNORECASE)
#: a secret's value shorter than this is not searched for in text: a two-letter password
#: would turn every word holding those letters into ***
MIN_SECRET_ENV = 4

#: parameter names that hold a secret: in a query (``?password=``) or a libpq keyword list
SECRET_PARAM = (r"(?:ssl)?password|passwd|pwd|pass|passphrase|secret|token|apikey|auth"
                r"|authorization|sig|signature|credentials?"
                r"|[\w.-]*[_.-](?:password|passwd|secret|token|key|signature|sig|credential)")
_PARAM_NAME = re.compile(rf"(?:{SECRET_PARAM})", re.IGNORECASE)
#: the scheme, then the authority's userinfo up to its last @ (an authority ends at / ? #,
#: white space or a quote: text may hold several URLs)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#\s'\"<>]*)@")
#: name=value where the name holds a secret: after ? & ; , white space, a quote or the start
_PARAM = re.compile(
    rf"""(^|[?&;,\s'"(])({SECRET_PARAM})(\s*=\s*)"""
    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^&#;,\s'"]*)""", re.IGNORECASE)


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


def secret_params(url: str) -> list[str]:
    """The names of the query parameters of ``url`` that hold a secret (libpq's
    ``password``, ``sslpassword``; ``token``, ``api_key``...)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        query = url.partition("?")[2]
    return [name for name, _ in parse_qsl(query, keep_blank_values=True)
            if _PARAM_NAME.fullmatch(name)]


def _hidden(userinfo: str, keep_user: bool) -> str:
    if not keep_user:
        return HIDDEN
    user, colon, _ = userinfo.partition(":")
    return user + (f":{HIDDEN}" if colon else "")


def environment_secrets() -> list[str]:
    """The values of the environment's secret variables, longest first (so that a secret
    that holds another is hidden whole)."""
    found = {v for k, v in os.environ.items()
             if SECRET_ENV.search(k) and len(v) >= MIN_SECRET_ENV}
    return sorted(found, key=len, reverse=True)


def redact(text: str | None, *, keep_user: bool = False) -> str | None:
    """A URL, or text holding URLs, as it may be logged or reported: the userinfo replaced
    by *** (``keep_user``: only its password, ``user:***@``, as a database URL is shown —
    its user names the account, which tells one store from another), every secret
    parameter's value replaced by ***, and every environment secret's value too. Text that
    is not quite a URL (a bad port, an unclosed [, a malformed scheme) is redacted as it
    stands."""
    if text is None:
        return None
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{_hidden(m.group(2), keep_user)}@", text)
    out = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{HIDDEN}", out)
    for secret in environment_secrets():
        out = out.replace(secret, HIDDEN)
    return out


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

"""Passwords in database URLs, hidden wherever a URL is shown or stored.

A storage URL may carry a password (``user:pw@host`` or ``?password=``);
`mask` hides it in any text: messages, provenance, reports. This module
imports no database library at import time, so that the results store can
mask a command line without loading the Optuna storage.
"""

from __future__ import annotations

import re

MASKED = "***"
_SHORTEST_SECRET = 4
"""Known passwords shorter than this are masked only where they sit in a URL, not everywhere."""

_CREDENTIALS = re.compile(
    # user:password@ in a URL: the password runs to the last '@' of the word, or, where it
    # holds spaces, to the first '@' before any '/'
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?:[^\s]*|[^@/\n]*)@"
)
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd)=)[^&#\s]*", re.IGNORECASE)


def mask(text: str, url: str | None = None) -> str:
    """``text`` with every password of a URL in it (``user:pw@`` or ``?password=``) hidden.

    With ``url``, that URL's own password is also hidden wherever ``text`` repeats
    it, in any spelling (a driver message echoing it, a password with spaces).
    """
    for secret in _secrets(url) if url else ():
        text = text.replace(secret, MASKED)
    text = _CREDENTIALS.sub(rf"\g<head>:{MASKED}@", text)
    return _QUERY_SECRET.sub(rf"\g<key>{MASKED}", text)


def _secrets(url: str) -> list[str]:
    """The password of ``url`` as written and as decoded, longest first (none if unparsable)."""
    from urllib.parse import quote, quote_plus

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    found = [str(parsed.password)] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in ("password", "passwd", "pwd"):
            found.extend([value] if isinstance(value, str) else list(value))
    spelled = {form for secret in found for form in (secret, quote(secret), quote_plus(secret))}
    return sorted((s for s in spelled if len(s) >= _SHORTEST_SECRET), key=len, reverse=True)

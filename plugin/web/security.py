"""What every page sends to keep the browser on our side: a strict Content-Security-Policy (scripts only
from our own /static, no inline script or style, nothing from elsewhere), no framing (unless a page is
meant to be embedded), no referrer, no caching of pages that carry tokens or personal data."""

from __future__ import annotations

from collections.abc import Iterable

#: The confirmation pages: no script at all.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def page_headers(*, frame_ancestors: Iterable[str] = ()) -> dict[str, str]:
    """Headers for a page with scripts (the chat, the admin console): scripts, styles, images and
    fetches from this origin only; ``frame_ancestors``: the origins that may embed the page (the chat
    widget on the helpdesk's pages); none by default."""
    ancestors = " ".join(frame_ancestors) or "'none'"
    headers = {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            f"form-action 'self'; frame-ancestors {ancestors}; base-uri 'none'"
        ),
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if ancestors == "'none'":
        headers["X-Frame-Options"] = "DENY"
    return headers

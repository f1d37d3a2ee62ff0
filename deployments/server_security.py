"""What serve.py warns about before serving: a Prefect API that other machines or other web pages can use.

Prefect's API has no authentication by default and its defaults let any web origin call it (CORS `*`, CSRF
protection off): a page open in the user's browser could start runs or create deployments that run code.
The fix belongs to the server's settings (`prefect server start`, see RECOMMENDED_SERVER_SETTINGS); serve.py
only reads them back from the server and says what to set.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

# The settings docs/security.md recommends for `prefect server start`: only the UI's own origin may call the API
# from a browser, and every state-changing request needs a CSRF token (the Prefect client and the UI fetch
# one by themselves).
RECOMMENDED_SERVER_SETTINGS = {
    "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": "http://127.0.0.1:4200",
    "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
}
PROBE_ORIGIN = "http://evil.example"  # sent as an Origin header only; nothing is ever sent to it


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name: it may reach this machine from others


def exposure_warning(api_url: str, auth_string: str | None) -> str | None:
    """A warning when the API is reached over the network without an auth string; None when that is not so."""
    if is_loopback_url(api_url) or auth_string:
        return None
    return (
        f"PREFECT_API_URL={api_url} is not a loopback address and no PREFECT_API_AUTH_STRING is set: "
        "anyone who reaches that server can start runs with any parameters and create deployments that run "
        "code. Put the server behind TLS and set PREFECT_SERVER_API_AUTH_STRING=user:password on it and "
        "PREFECT_API_AUTH_STRING=user:password here, or reach it through an SSH tunnel to 127.0.0.1"
    )


def browser_warnings(api_url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> list[str]:
    """Ask the server whether a foreign web page could use it: CSRF protection off, or CORS open to any origin."""
    warnings = []
    with httpx.Client(base_url=api_url.rstrip("/") + "/", headers=headers, timeout=timeout) as client:
        csrf = client.get("csrf-token", params={"client": "curriculum-serve-check"})
        if csrf.status_code == 422 and "disabled" in csrf.text:
            warnings.append(
                "the Prefect server has CSRF protection off: a web page open in your browser can start runs. "
                "Restart it with PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true"
            )
        preflight = client.options("flows/filter", headers={
            "Origin": PROBE_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        })
        allowed = preflight.headers.get("access-control-allow-origin")
        if allowed in ("*", PROBE_ORIGIN):
            warnings.append(
                f"the Prefect server lets any web origin call its API (CORS answered {allowed!r} to "
                f"{PROBE_ORIGIN}). Restart it with PREFECT_SERVER_CORS_ALLOWED_ORIGINS set to the UI's own "
                "address, e.g. http://127.0.0.1:4200"
            )
    return warnings

"""serve.py's warning about an API that other machines can reach without an auth string (no traffic sent)."""

from __future__ import annotations

import pytest

from deployments.server_security import exposure_warning, is_loopback_url


@pytest.mark.parametrize("url", ["http://127.0.0.1:4200/api", "http://localhost:4200/api", "http://[::1]:4200/api",
                                 "http://127.0.0.2:4200/api"])
def test_loopback_apis_get_no_warning(url):
    assert is_loopback_url(url)
    assert exposure_warning(url, None) is None


@pytest.mark.parametrize("url", ["http://10.0.0.5:4200/api", "http://prefect.internal:4200/api",
                                 "http://0.0.0.0:4200/api", "http://[2001:db8::1]:4200/api"])
def test_an_api_over_the_network_without_auth_is_warned_about_with_what_to_set(url):
    warning = exposure_warning(url, None)
    assert warning is not None and url in warning
    assert "PREFECT_SERVER_API_AUTH_STRING" in warning and "PREFECT_API_AUTH_STRING" in warning
    assert exposure_warning(url, "user:secret") is None

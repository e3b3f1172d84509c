"""API paths run on the lean middleware stack; the admin keeps the full one."""

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_api_paths_skip_the_browser_middleware_and_the_admin_keeps_it(gateway_url):
    api = httpx.get(gateway_url + "/v1/models")
    assert api.status_code == 401 and api.headers["x-request-id"]
    assert "x-frame-options" not in api.headers and "set-cookie" not in api.headers
    assert httpx.get(gateway_url + "/health").headers["x-request-id"]
    admin = httpx.get(gateway_url + "/admin/login/")
    assert admin.status_code == 200 and admin.headers["x-frame-options"] == "DENY"
    assert admin.headers["x-request-id"] and "csrftoken" in admin.headers.get("set-cookie", "")

"""Static files come from the gateway's own ASGI app (no CDN, no separate web server)."""

import httpx
import pytest

from tests.support.servers import serve_in_thread


@pytest.fixture(scope="module")
def gateway():
    from config.asgi import application

    with serve_in_thread(application) as url:
        yield url


def test_chartjs_is_served_from_our_static_files(gateway):
    response = httpx.get(f"{gateway}/static/dashboard/vendor/chart.umd.min.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert response.text.startswith("/*!\n * Chart.js v4.6.1")
    assert response.headers["cache-control"] == "public, max-age=300"
    again = httpx.get(f"{gateway}/static/dashboard/vendor/chart.umd.min.js",
                      headers={"If-Modified-Since": response.headers["last-modified"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/static/dashboard/dashboard.css", "/static/dashboard/live.js",
                                  "/static/admin/css/base.css"])
def test_dashboard_and_admin_assets(gateway, path):
    assert httpx.get(gateway + path).status_code == 200


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../config/settings.py",
                                  "/static/%2e%2e/config/settings.py"])
def test_missing_or_escaping_paths_are_404(gateway, path):
    response = httpx.get(gateway + path)
    assert response.status_code == 404 and "SECRET_KEY" not in response.text


def test_other_paths_reach_django(gateway):
    assert httpx.get(f"{gateway}/health").json() == {"status": "ok"}

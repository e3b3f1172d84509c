import httpx
import pytest

from gateway import upstream
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_liveness_and_readiness(gateway_url, fake_upstream, settings):
    assert httpx.get(gateway_url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway_url + "/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "cache": True, "inference": True}
    settings.FAIRWAY_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    upstream.reset()
    not_ready = httpx.get(gateway_url + "/ready")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["inference"] is False


def test_database_outage_is_a_503_not_a_500():
    from django import db

    from gateway.errors import to_api_error

    for exc in (db.OperationalError("sorry, too many clients already"), db.InterfaceError("connection closed")):
        error = to_api_error(exc)
        assert error.status == 503 and error.code == "service_unavailable" and error.retry_after
        assert "too many clients" not in error.message  # no internals leak to clients

import pytest

from tests.support.isolation import fake_upstream_serving
from tests.support.servers import serve_in_thread


@pytest.fixture
def fake_upstream(settings):
    """A FAKE inference service (scripted tokens) on a real socket; the gateway points at it."""
    with fake_upstream_serving(settings) as service:
        yield service


@pytest.fixture
def tenant_key(transactional_db):
    from tenants import services

    plan = services.plan_create(name="test", max_tokens_per_request=512, weight="2")
    tenant = services.tenant_create(name="Acme", slug="acme", plan=plan)
    issued = services.apikey_create(tenant=tenant, name="test")
    return issued


@pytest.fixture
def gateway_url(transactional_db):
    """The real Django ASGI app under uvicorn in a thread."""
    from config.asgi import application

    with serve_in_thread(application) as url:
        yield url

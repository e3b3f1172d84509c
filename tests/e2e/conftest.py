"""Real processes: `manage.py runinference` on a tiny random Llama, and the gateway under uvicorn.

Both share the pytest test database (PostgreSQL in CI, a SQLite file by default), so keys created
in a test are seen by the gateway process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.support.servers import free_port
from tests.support.tiny_model import save_tiny_model

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = "tiny-llama"


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_ready(url: str, process: subprocess.Popen, token: str | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@pytest.fixture(scope="session")
def live_fairway(tmp_path_factory, django_db_setup, django_db_blocker):
    model_dir = save_tiny_model(tmp_path_factory.mktemp("model") / TINY_MODEL)
    token = secrets.token_urlsafe(24)
    inference_port, gateway_port = free_port(), free_port()
    env = {**os.environ, "FAIRWAY_MODEL_PATH": str(model_dir), "FAIRWAY_MODEL_NAME": TINY_MODEL,
           "FAIRWAY_INFERENCE_TOKEN": token, "FAIRWAY_INFERENCE_URL": f"http://127.0.0.1:{inference_port}",
           "FAIRWAY_KEY_PEPPER": settings.FAIRWAY_KEY_PEPPER, "FAIRWAY_SECRET_KEY": settings.SECRET_KEY,
           "DATABASE_URL": test_database_url(), "FAIRWAY_KEKS": settings.FAIRWAY_KEKS,
           "FAIRWAY_TORCH_THREADS": "1", "FAIRWAY_LOG_LEVEL": "WARNING"}
    logs = tmp_path_factory.mktemp("logs")
    inference = subprocess.Popen([sys.executable, "manage.py", "runinference", "--port", str(inference_port)],
                                 cwd=ROOT, env=env, stdout=open(logs / "inference.log", "w"), stderr=subprocess.STDOUT)
    gateway = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--port",
                                str(gateway_port), "--no-access-log"], cwd=ROOT, env=env,
                               stdout=open(logs / "gateway.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{inference_port}/health", inference, token)
        wait_ready(f"http://127.0.0.1:{gateway_port}/health", gateway)
        yield {"gateway": f"http://127.0.0.1:{gateway_port}", "inference": f"http://127.0.0.1:{inference_port}",
               "token": token, "logs": logs}
    finally:
        for process in (gateway, inference):
            process.terminate()
        for process in (gateway, inference):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def e2e_key(transactional_db):
    from tenants import services

    plan = services.plan_create(name="e2e", max_tokens_per_request=400)
    tenant = services.tenant_create(name="E2E", slug="e2e", plan=plan)
    return services.apikey_create(tenant=tenant, name="e2e").plaintext

"""Missing or wrong KEKs stop the process at start; the embedded default generates and announces one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from conversations import crypto, keystore, services, startup

ROOT = Path(__file__).resolve().parents[2]
KEY = crypto.kek_generate_line("k1").split(":", 1)[1]


@pytest.mark.parametrize("raw, fragment", [
    ("", "empty"), ("k1", "must look like"), ("k1:not base64!", "not base64"),
    ("k1:" + "QUJD", "exactly 32 bytes"), (f"k1:{KEY},k1:{KEY}", "twice"), (f"bad id:{KEY}", "must look like"),
])
def test_malformed_keks_are_refused_without_echoing_key_material(raw, fragment, settings):
    settings.FAIRWAY_KEKS = raw or " "
    with pytest.raises(ImproperlyConfigured) as caught:
        startup.keys_check_on_start()
    assert fragment in str(caught.value) and KEY not in str(caught.value)


def test_unset_keks_are_refused(settings):
    settings.FAIRWAY_KEKS, settings.FAIRWAY_KEKS_SOURCE = "", "unset"
    with pytest.raises(ImproperlyConfigured, match="FAIRWAY_KEKS is not set"):
        startup.keys_check_on_start()


def test_wrong_or_missing_kek_for_stored_keys_is_refused(alice, settings):
    services.conversation_create(tenant_id=alice.tenant.pk)  # a DEK wrapped by t1
    startup.stored_keys_check(ring=keystore.keyring())  # the right key passes
    wrong = crypto.keyring_parse(crypto.kek_generate_line("t1"))
    with pytest.raises(ImproperlyConfigured, match="cannot unwrap"):
        startup.stored_keys_check(ring=wrong)
    other = crypto.keyring_parse(crypto.kek_generate_line("t2"))
    with pytest.raises(ImproperlyConfigured, match="KEK id\\(s\\) t1"):
        startup.stored_keys_check(ring=other)


def _start(env_overrides: dict, tmp_path) -> subprocess.CompletedProcess:
    """Import the ASGI app in a fresh process, as uvicorn does."""
    env = {k: v for k, v in os.environ.items() if k not in ("FAIRWAY_KEKS", "DATABASE_URL")}
    env.update(FAIRWAY_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings", **env_overrides)
    return subprocess.run([sys.executable, "-c", "import config.asgi; print('started')"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_gateway_refuses_to_start_without_keks_when_database_url_is_set(tmp_path):
    result = _start({"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}, tmp_path)
    assert result.returncode != 0 and "started" not in result.stdout
    assert "ImproperlyConfigured" in result.stderr and "FAIRWAY_KEKS is not set" in result.stderr


def test_embedded_default_generates_a_development_kek_and_says_so(tmp_path):
    first = _start({}, tmp_path)
    assert first.returncode == 0 and "started" in first.stdout, first.stderr
    assert "Generated a development key-encryption key" in first.stderr
    path = tmp_path / "secrets" / "conversations_kek"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and crypto.keyring_parse(path.read_text()).primary.id == "dev1"
    again = _start({}, tmp_path)
    assert again.returncode == 0 and "Generated" not in again.stderr  # reused, stable across restarts

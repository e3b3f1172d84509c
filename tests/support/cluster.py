"""A whole Fairway deployment on one machine, for fault and load tests.

Private Redis and PostgreSQL servers (on spare ports, in temp dirs) that a test may kill and
restart without touching the shared services other suites use; N inference replicas (tiny random
Llama) that heartbeat into the private Redis; M gateway processes sharing both stores.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str, token: str = "") -> bool:
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(url, headers=headers, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class PrivateRedis:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                          text=True).stdout.strip() == "PONG", 10, "private redis")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class PrivatePostgres:
    """initdb + pg_ctl as the postgres user (PostgreSQL refuses to run as root)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.data = workdir / "pgdata"
        workdir.chmod(0o777)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    def init(self) -> None:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "log"),
                          "-o", f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")


class FairwayCluster:
    def __init__(self, *, model_dir: Path, replicas: int = 2, gateways: int = 2, extra_env: dict | None = None):
        self.tmp = Path(tempfile.mkdtemp(prefix="fairway-cluster-"))
        self.redis = PrivateRedis(self.tmp)
        self.postgres = PrivatePostgres(self.tmp)
        self.token = secrets.token_urlsafe(24)
        self.model_dir, self.n_replicas, self.n_gateways = model_dir, replicas, gateways
        self.extra_env = extra_env or {}
        self.replicas: list[tuple[str, subprocess.Popen]] = []
        self.gateways: list[tuple[str, subprocess.Popen]] = []

    def env(self) -> dict:
        import base64

        kek = getattr(self, "_kek", None) or "k1:" + base64.b64encode(os.urandom(32)).decode()
        self._kek = kek
        return {**os.environ, "DATABASE_URL": self.postgres.url, "REDIS_URL": self.redis.url,
                "FAIRWAY_REPLICA_REGISTRY_URL": self.redis.url, "FAIRWAY_INFERENCE_URLS": "",
                "FAIRWAY_INFERENCE_URL": "http://127.0.0.1:1", "FAIRWAY_INFERENCE_TOKEN": self.token,
                "FAIRWAY_MODEL_PATH": str(self.model_dir), "FAIRWAY_MODEL_NAME": "tiny-llama",
                "FAIRWAY_KEY_PEPPER": "cluster-pepper", "FAIRWAY_SECRET_KEY": "cluster-secret-key-" + "x" * 40,
                "FAIRWAY_KEKS": kek, "FAIRWAY_VAR_DIR": str(self.tmp / "var"), "FAIRWAY_TORCH_THREADS": "1",
                "FAIRWAY_LOG_LEVEL": "WARNING", "FAIRWAY_REPLICA_REFRESH_SECONDS": "0.5", **self.extra_env}

    def manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True,
                                text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> "FairwayCluster":
        self.redis.start()
        self.postgres.init()
        self.postgres.start()
        self.manage("migrate", "--noinput")
        # Spawn everything first, then wait: process start-up (imports, model load) overlaps.
        for _ in range(self.n_replicas):
            self.start_replica(wait=False)
        for _ in range(self.n_gateways):
            self.start_gateway(wait=False)
        for url, _ in self.replicas:
            wait_until(lambda: http_ok(url + "/ready"), 180, f"replica {url}")
        for url, _ in self.gateways:
            wait_until(lambda: http_ok(url + "/ready"), 120, f"gateway {url}")
        return self

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "a")
        return subprocess.Popen(args, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)

    def start_replica(self, *, wait: bool = True) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = self._spawn(f"replica-{port}", [sys.executable, "manage.py", "runinference", "--port", str(port)])
        self.replicas.append((url, process))
        if wait:
            wait_until(lambda: http_ok(url + "/ready"), 180, f"replica {url}")
        return url

    def start_gateway(self, *, wait: bool = True) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = self._spawn(f"gateway-{port}", [sys.executable, "-m", "uvicorn", "config.asgi:application",
                                                  "--port", str(port), "--no-access-log", "--timeout-keep-alive", "75"])
        self.gateways.append((url, process))
        if wait:
            wait_until(lambda: http_ok(url + "/ready"), 120, f"gateway {url}")
        return url

    def sql(self, query: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.postgres.url, connect_timeout=5) as connection:
            return connection.execute(query, params).fetchall()

    def kill_replica(self, index: int) -> None:
        self.replicas[index][1].send_signal(signal.SIGKILL)
        self.replicas[index][1].wait()

    def stop(self) -> None:
        for _, process in self.gateways + self.replicas:
            if process.poll() is None:
                process.terminate()
        for _, process in self.gateways + self.replicas:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.stop()
        try:
            self.postgres.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.tmp.glob("*.log")))

"""Fault tests: a whole deployment (2 replicas, 2 gateways, private PostgreSQL + Redis) on this machine."""

import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.cluster import FairwayCluster
from tests.support.tiny_model import save_tiny_model

MODEL = "tiny-llama"


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    model_dir = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", context=4096, ascii_only=True)
    # Eight batch slots per replica: the fair-share test needs queues, and fills them with few clients.
    cluster = FairwayCluster(model_dir=model_dir, replicas=2, gateways=2, extra_env={"FAIRWAY_MAX_NUM_SEQS": "8", "FAIRWAY_REPLICA_HEARTBEAT_SECONDS": "0.25"})
    try:
        cluster.start()
        yield cluster
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def new_key(cluster: FairwayCluster, **limits) -> str:
    """A fresh plan + tenant + key in the cluster's database (via the management commands)."""
    name = f"t{uuid.uuid4().hex[:10]}"
    options = {"rpm": 10_000, "tpm": 10_000_000, "max_concurrent_requests": 100, "max_tokens_per_request": 4000,
               **limits}
    args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    cluster.manage("plan_create", name, *args)
    cluster.manage("tenant_create", name, "--plan", name)
    return cluster.manage("apikey_create", "--tenant", name).strip().splitlines()[-1]


@dataclass
class StreamResult:
    request_id: str = ""
    status: int = 0
    text: str = ""
    first_token_at: float | None = None
    error: dict | None = None
    error_at: float | None = None
    done: bool = False
    events: list = field(default_factory=list)


def stream_chat(gateway: str, key: str, result: StreamResult, *, max_tokens: int, content: str = "hi") -> None:
    import json

    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", gateway + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        result.status = response.status_code
        result.request_id = response.headers.get("x-request-id", "")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                result.done = True
                break
            event = json.loads(data)
            if "error" in event:
                result.error, result.error_at = event["error"], time.monotonic()
                break
            delta = event["choices"][0]["delta"].get("content") if event.get("choices") else None
            if delta:
                result.first_token_at = result.first_token_at or time.monotonic()
                result.text += delta


def start_streams(cluster, key, count: int, *, max_tokens: int) -> tuple[list[StreamResult], list[threading.Thread]]:
    results = [StreamResult() for _ in range(count)]
    threads = [threading.Thread(target=stream_chat, daemon=True,
                                args=(cluster.gateways[i % len(cluster.gateways)][0], key, results[i]),
                                kwargs={"max_tokens": max_tokens, "content": f"story {i}"})
               for i in range(count)]
    for thread in threads:
        thread.start()
    return results, threads

"""Wiring of the inference service: model + engine + HTTP app, served by uvicorn."""

from __future__ import annotations

import logging
import time
from dataclasses import fields

from django.conf import settings

logger = logging.getLogger("fairway.inference")


def engine_config(overrides: dict):
    from .engine.engine import EngineConfig

    defaults = EngineConfig()
    known = {field.name for field in fields(EngineConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise RuntimeError(f"Unknown engine settings: {sorted(unknown)}")
    return EngineConfig(**{name: _coerce(raw, getattr(defaults, name)) for name, raw in overrides.items()})


def _coerce(raw, default):
    """Settings arrive as strings from the environment; give them the type of the engine's default."""
    if default is None or isinstance(raw, type(default)):
        return raw
    if isinstance(default, bool):
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    return type(default)(raw)


def build_service(*, model_path: str):
    import torch

    from .engine.engine import Engine
    from .loader import load_model
    from .metrics import EngineMetrics
    from .server import ServiceState
    from .tokenization import PromptBuilder

    if settings.FAIRWAY_TORCH_THREADS:
        torch.set_num_threads(settings.FAIRWAY_TORCH_THREADS)
    started = time.monotonic()
    loaded = load_model(model_path=model_path, cache_dir=settings.FAIRWAY_MODEL_CACHE_DIR,
                        device=settings.FAIRWAY_DEVICE, served_name=settings.FAIRWAY_MODEL_NAME)
    config = engine_config({**settings.FAIRWAY_ENGINE, "device": loaded.device})
    engine = Engine(loaded.model, loaded.tokenizer, config)
    engine.start()
    logger.info("model %s loaded on %s in %.1fs", loaded.name, loaded.device, time.monotonic() - started)
    # The engine may serve less than the model's nominal context (its KV budget bounds one sequence).
    context_length = min(loaded.context_length, getattr(engine, "max_model_len", loaded.context_length))
    return ServiceState(engine=engine, prompt_builder=PromptBuilder(loaded.tokenizer), model_name=loaded.name,
                        context_length=context_length, device=loaded.device,
                        token=settings.FAIRWAY_INFERENCE_TOKEN, metrics=EngineMetrics(loaded.name))


def serve(state, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT. Shutdown is graceful: the replica marks itself draining and leaves
    the registry first (gateways stop routing to it and retry elsewhere), then uvicorn lets open
    streams finish for up to FAIRWAY_SHUTDOWN_GRACE_SECONDS before the engine stops."""
    import uuid

    import uvicorn

    from .fairshare import PeerServiceLedger, RecentlyServed
    from .registry import ReplicaHeartbeat
    from .server import InferenceApp

    heartbeat = None
    if settings.FAIRWAY_REPLICA_REGISTRY_URL:
        url = settings.FAIRWAY_REPLICA_ADVERTISE_URL or f"http://{host}:{port}"
        on_peers = None
        if settings.FAIRWAY_FAIR_SHARE_ACROSS_REPLICAS:
            ledger = PeerServiceLedger()
            on_peers = lambda peers: state.engine.set_peer_service(ledger.observe(peers))  # noqa: E731

        recently_served = RecentlyServed()

        def describe() -> dict:
            return {"model": state.model_name, "context_length": state.context_length, "started_at": state.started_at,
                    "status": "ok", "load": state.load(),
                    "service": recently_served.select(state.engine.service_given())}

        heartbeat = ReplicaHeartbeat(
            redis_url=settings.FAIRWAY_REPLICA_REGISTRY_URL, replica_id=f"{state.model_name}-{uuid.uuid4().hex[:8]}",
            url=url, describe=describe, on_peers=on_peers, interval=settings.FAIRWAY_REPLICA_HEARTBEAT_SECONDS)
        heartbeat.start()
        logger.info("registered as replica %s at %s", heartbeat.replica_id, url)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            state.draining = True
            if heartbeat is not None:
                heartbeat.stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(InferenceApp(state), host=host, port=port, lifespan="on", access_log=False,
                            log_level="warning", timeout_graceful_shutdown=settings.FAIRWAY_SHUTDOWN_GRACE_SECONDS)
    logger.info("inference service listening on http://%s:%s", host, port)
    DrainingServer(config).run()

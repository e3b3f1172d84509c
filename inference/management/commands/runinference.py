"""`manage.py runinference`: the inference service (one process, one model, one engine)."""

import logging

from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger("fairway.inference")


class Command(BaseCommand):
    help = "Run the inference service: load the model, start the engine, serve the internal HTTP API."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.FAIRWAY_INFERENCE_HOST)
        parser.add_argument("--port", type=int, default=settings.FAIRWAY_INFERENCE_PORT)
        parser.add_argument("--model", default=settings.FAIRWAY_MODEL_PATH,
                            help="HF model directory or .gguf file (default: the bundled SmolLM2-135M-Instruct)")
        parser.add_argument("--prepare-only", action="store_true", help="Prepare the model cache and exit.")

    def handle(self, *args, host, port, model, prepare_only, **options):
        from inference.service import build_service, serve

        state = build_service(model_path=model)
        if prepare_only:
            state.engine.shutdown()
            self.stdout.write(f"model ready: {state.model_name}")
            return
        serve(state, host=host, port=port)

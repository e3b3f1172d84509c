"""Fairway inference engine: continuous batching with a weighted fair-share scheduler.

Modules, in reading order: sequence (request state), scheduler (who runs next; pure Python),
cache (KV block bookkeeping), runner (the only torch code: forward pass and sampling),
detokenizer (incremental text and stop strings), engine (the loop that glues them).
"""

"""Sampling: parameter validation and the runner's seeded draws."""
import pytest
import torch

from inference.engine.errors import InvalidRequest
from inference.engine.runner import ModelRunner
from inference.engine.sampling import is_greedy, validate
from inference.engine.sequence import SamplingParams


@pytest.mark.parametrize("params", [
    SamplingParams(max_tokens=0), SamplingParams(max_tokens=5, temperature=-1), SamplingParams(max_tokens=5, top_p=0),
    SamplingParams(max_tokens=5, top_p=1.5), SamplingParams(max_tokens=5, top_k=-2), SamplingParams(max_tokens=5, stop=("",)),
])
def test_invalid_params_are_rejected(params):
    with pytest.raises(InvalidRequest):
        validate(params)


def test_zero_temperature_is_greedy():
    assert is_greedy(SamplingParams(max_tokens=1, temperature=0))
    assert not is_greedy(SamplingParams(max_tokens=1, temperature=0.7))


def draws(params, seed, n=20):
    logits = torch.linspace(-2, 2, 50)
    gen = torch.Generator().manual_seed(seed)
    return [ModelRunner._draw(logits, params, gen) for _ in range(n)]


def test_same_seed_same_draws_other_seed_differs():
    params = SamplingParams(max_tokens=1, temperature=1.0)
    assert draws(params, 1) == draws(params, 1)
    assert draws(params, 1) != draws(params, 2)


def test_top_k_and_top_p_restrict_candidates():
    assert set(draws(SamplingParams(max_tokens=1, top_k=3), 0, 200)) <= {47, 48, 49}
    assert set(draws(SamplingParams(max_tokens=1, top_p=0.05), 0, 50)) == {49}
    mixed = set(draws(SamplingParams(max_tokens=1, top_k=10, top_p=0.5, temperature=0.5), 0, 200))
    assert mixed <= set(range(40, 50)) and len(mixed) > 1

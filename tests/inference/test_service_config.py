from inference.service import engine_config


def test_engine_settings_from_environment_strings_get_the_right_types():
    config = engine_config({"max_num_seqs": "8", "batch_invariant": "0", "policy": "fcfs", "max_queue_wait_s": "2.5"})
    assert config.max_num_seqs == 8 and config.batch_invariant is False
    assert config.policy == "fcfs" and config.max_queue_wait_s == 2.5
    assert engine_config({"batch_invariant": "true"}).batch_invariant is True


def test_unknown_engine_settings_are_refused():
    import pytest

    with pytest.raises(RuntimeError, match="Unknown engine settings"):
        engine_config({"max_num_sequences": "8"})

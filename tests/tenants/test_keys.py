"""Key format, generation, parsing and hashing: pure functions, no database."""

import re

import pytest

from tenants import keys

KEY_RE = re.compile(r"^fw_[0-9A-Za-z]{12}_[0-9A-Za-z]{32}[0-9A-Za-z]{6}$")


def _with_valid_checksum(key_id: str, secret: str) -> str:
    body = f"fw_{key_id}_{secret}"
    return body + keys.checksum(body)


def test_generated_key_has_the_documented_format():
    generated = keys.generate()
    assert KEY_RE.match(generated.plaintext)
    assert generated.plaintext.startswith(f"fw_{generated.key_id}_{generated.secret}")
    assert generated.last4 == generated.plaintext[-4:]
    body = generated.plaintext[:-6]
    assert generated.plaintext[-6:] == keys.checksum(body)


def test_generated_keys_are_unique():
    generated = [keys.generate() for _ in range(200)]
    assert len({g.key_id for g in generated}) == 200
    assert len({g.secret for g in generated}) == 200


def test_checksum_is_fixed_width_base62_of_crc32():
    assert keys.checksum("") == "000000"  # crc32("") == 0, zero-padded
    assert len(keys.checksum("fw_x")) == 6
    assert keys._base62(2**32 - 1, width=6) == "4gfFC3"  # the largest CRC32 still fits in 6 chars


def test_parse_round_trip():
    generated = keys.generate()
    parsed = keys.parse(generated.plaintext)
    assert (parsed.key_id, parsed.secret, parsed.last4) == (generated.key_id, generated.secret, generated.last4)


@pytest.mark.parametrize("raw", [
    "", "fw_", "sk-abc", "fw_abc_def", "FW_" + "a" * 12 + "_" + "b" * 38, "fw_" + "a" * 11 + "_" + "b" * 38,
    "fw_" + "a" * 12 + "_" + "b" * 37, "fw_" + "a" * 12 + "-" + "b" * 38, "fw_" + "a" * 12 + "_" + "b" * 37 + "!",
    " fw_" + "a" * 12 + "_" + "b" * 38, "fw_" + "a" * 12 + "_" + "b" * 300, None, 42,
])
def test_parse_rejects_malformed(raw):
    with pytest.raises(keys.MalformedKey):
        keys.parse(raw)


def test_every_single_character_typo_is_caught_by_the_checksum():
    plaintext = keys.generate().plaintext
    for index in range(3, len(plaintext)):
        if plaintext[index] == "_":
            continue
        for replacement in ("0", "z"):
            if replacement == plaintext[index]:
                continue
            typo = plaintext[:index] + replacement + plaintext[index + 1:]
            with pytest.raises(keys.BadChecksum):
                keys.parse(typo)


def test_adjacent_transpositions_are_caught():
    plaintext = keys.generate().plaintext
    for index in range(16, len(plaintext) - 1):
        a, b = plaintext[index], plaintext[index + 1]
        if a != b:
            with pytest.raises(keys.BadChecksum):
                keys.parse(plaintext[:index] + b + a + plaintext[index + 2:])


def test_truncated_key_is_rejected():
    plaintext = keys.generate().plaintext
    with pytest.raises(keys.InvalidKey):
        keys.parse(plaintext[:-1])


@pytest.mark.django_db
def test_parse_and_reject_without_any_query(django_assert_num_queries):
    plaintext = keys.generate().plaintext
    with django_assert_num_queries(0):
        keys.parse(plaintext)
        with pytest.raises(keys.BadChecksum):
            keys.parse(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"))


def test_secrets_never_appear_in_repr_str_or_errors():
    generated = keys.generate()
    parsed = keys.parse(generated.plaintext)
    for obj in (generated, parsed):
        assert generated.secret not in repr(obj) and generated.secret not in str(obj)
    typo = generated.plaintext[:-1] + ("A" if generated.plaintext[-1] != "A" else "B")
    with pytest.raises(keys.BadChecksum) as info:
        keys.parse(typo)
    assert generated.secret not in str(info.value)


def test_hash_secret_is_hmac_sha256_with_the_pepper(settings):
    import hashlib
    import hmac

    settings.FAIRWAY_KEY_PEPPER = "pepper-one"
    digest = keys.hash_secret("s3cret")
    assert digest == hmac.new(b"pepper-one", b"s3cret", hashlib.sha256).hexdigest()
    assert len(digest) == 64 and "s3cret" not in digest
    settings.FAIRWAY_KEY_PEPPER = "pepper-two"
    assert keys.hash_secret("s3cret") != digest  # rotating the pepper invalidates every stored hash


def test_verify():
    generated = keys.generate()
    stored = keys.hash_secret(generated.secret)
    assert keys.verify(generated.secret, stored)
    assert not keys.verify(generated.secret[:-1] + "x", stored)
    assert not keys.verify(generated.secret, keys.hash_secret(generated.secret, pepper="other"))


def test_unknown_but_well_formed_key_parses():
    # A valid checksum says nothing about existence: that is the database's job.
    raw = _with_valid_checksum("A" * 12, "b" * 32)
    assert keys.parse(raw).key_id == "A" * 12

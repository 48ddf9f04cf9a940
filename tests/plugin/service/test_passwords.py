"""Local accounts' password hashes (Argon2id through argon2-cffi)."""

from __future__ import annotations

import logging

import pytest
from argon2 import PasswordHasher

from plugin.service.passwords import DEFAULT_HASHER, hash_password, verify_password

# Cheap parameters for most tests (the real ones cost ~0.1-0.5 s a hash on a shared CI core);
# test_default_parameters_round_trip uses the real ones.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_default_parameters_round_trip():
    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse battery staple") == (True, False)
    assert verify_password(stored, "correct horse battery stapler").ok is False
    assert DEFAULT_HASHER.check_needs_rehash(stored) is False


def test_same_password_never_gives_the_same_hash():
    assert hash_password("s3cret-pass", hasher=CHEAP) != hash_password("s3cret-pass", hasher=CHEAP)


@pytest.mark.parametrize("password", ["Пароль ёж²-ü", "密码🔑", "  spaces at both ends  ", "x" * 1000])
def test_any_text_round_trips_exactly(password):
    stored = hash_password(password, hasher=CHEAP)
    assert verify_password(stored, password, hasher=CHEAP).ok
    # Nothing is normalized: a look-alike is another password.
    assert not verify_password(stored, password.strip() + "!", hasher=CHEAP).ok


def test_empty_password_cannot_be_set_and_never_verifies():
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
    stored = hash_password("something", hasher=CHEAP)
    assert verify_password(stored, "", hasher=CHEAP).ok is False


def test_no_account_is_refused_like_a_wrong_password():
    assert verify_password(None, "anything", hasher=CHEAP) == (False, False)


def test_weaker_stored_hash_verifies_and_asks_for_a_rehash():
    stored = hash_password("old-password", hasher=CHEAP)
    check = verify_password(stored, "old-password")  # verified with today's (default) parameters
    assert check.ok and check.needs_rehash
    renewed = hash_password("old-password")
    assert verify_password(renewed, "old-password") == (True, False)
    # A wrong password never asks for a rehash (nothing to store it from).
    assert verify_password(stored, "wrong") == (False, False)


@pytest.mark.parametrize("stored", ["", "not a hash", "$2b$12$abcdefghijklmnopqrstuuQe0ifJ3QK6fZ8lQvA4kJ1bU6rJfOa.", "$argon2id$v=19$m=1$broken"])
def test_damaged_or_foreign_hash_is_refused_with_a_warning_not_a_crash(stored, caplog):
    with caplog.at_level(logging.WARNING, logger="plugin.service.passwords"):
        assert verify_password(stored, "whatever", hasher=CHEAP).ok is False
    assert "password_hash_invalid" in caplog.text or "password_verify_failed" in caplog.text
    assert "whatever" not in caplog.text
    assert not stored or stored not in caplog.text

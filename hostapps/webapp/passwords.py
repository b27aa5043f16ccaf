"""Password hashing for table `users`: PBKDF2-HMAC-SHA256 with a per-user salt, stored as hex."""
from __future__ import annotations

import hashlib
import hmac
import secrets

ITERATIONS = 100_000
SALT_BYTES = 16


def hash_password(password: str, salt_hex: str, iterations: int = ITERATIONS) -> str:
    """The hex PBKDF2-HMAC-SHA256 digest of password under salt_hex."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), bytes.fromhex(salt_hex), iterations)
    return digest.hex()


def new_salt() -> str:
    """A fresh random salt, hex."""
    return secrets.token_hex(SALT_BYTES)


def verify_password(password: str, salt_hex: str, iterations: int, expected_hex: str) -> bool:
    """Whether password hashes to expected_hex, compared in constant time."""
    return hmac.compare_digest(hash_password(password, salt_hex, iterations), expected_hex.lower())

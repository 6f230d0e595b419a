"""Public identifiers: a type prefix and 20 random base32 characters (`acct_…`, `rcpt_…`)."""

import base64
import hashlib
import secrets


def new_id(prefix: str) -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode().lower()
    return f"{prefix}_{raw}"


def new_key_secret() -> str:
    return "tf-" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Key secrets carry 256 bits of entropy, so a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_prefix(secret: str) -> str:
    return secret[:10]

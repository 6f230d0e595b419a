"""Public identifiers: a type prefix and 24 base32 characters (`acct_…`, `rcpt_…`): 48 bits of the
time in milliseconds, then 72 random bits.

The time comes first so that the ids of the rows written together sort together: the many
indexes on ids (receipts, attempts, holds, transfers) then take new entries at their right edge
instead of at random pages, which after every checkpoint would each write a full page image to
the WAL. The alphabet is base32's, reordered so that text order is time order."""

import base64
import hashlib
import secrets
import time

_ORDERED = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"234567abcdefghijklmnopqrstuvwxyz")


def new_id(prefix: str) -> str:
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + secrets.token_bytes(9)
    return f"{prefix}_{base64.b32encode(raw).translate(_ORDERED).decode()}"


def new_key_secret() -> str:
    return "tf-" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Key secrets carry 256 bits of entropy, so a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_prefix(secret: str) -> str:
    return secret[:10]

"""API tokens of local accounts: their format, and how they are kept (hashed) at rest.

A token reads ``dyn_<key id>_<secret>``. The key id is stored in clear and finds the row; the
secret is stored only as a salted scrypt hash, so a copy of the database does not yield
usable tokens. scrypt is deliberately slow (tens of ms), which is why the gateway caches a
verified token for a short while instead of hashing on every request; and why a token whose
key id is unknown is refused without hashing anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "dyn_"
_TOKEN = re.compile(r"dyn_([a-z0-9]{12})_([A-Za-z0-9_-]{43})\Z")
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32


@dataclass(frozen=True, slots=True)
class NewToken:
    key_id: str
    token: str
    """The whole token: shown to its owner once, never stored."""
    hashed: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def looks_like_token(text: str) -> bool:
    return text.startswith(PREFIX)


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str, *, n: int = _SCRYPT_N) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_HASH_BYTES
    )
    return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, hashed: str) -> bool:
    """Constant-time check of ``secret`` against a stored hash; False for a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def new_token(*, n: int = _SCRYPT_N) -> NewToken:
    # 12 characters of [a-z0-9] (~62 bits): unique enough for a primary key, and the
    # insert fails loudly on the rare collision rather than shadowing a token.
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    key_id = "".join(secrets.choice(alphabet) for _ in range(12))
    secret = secrets.token_urlsafe(32)  # 43 characters, 256 bits
    return NewToken(
        key_id=key_id, token=f"{PREFIX}{key_id}_{secret}", hashed=hash_secret(secret, n=n)
    )


def cache_key(token: str) -> str:
    """What the verification cache is keyed by: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()

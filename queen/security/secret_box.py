"""AES-256-GCM encryption of secret config values, under named keys (rotation: the key id travels with
the ciphertext; the first key encrypts, every key decrypts)."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from queen.domain.errors import FailedPrecondition, InvalidArgument
from queen.security.api_tokens import load_or_create_key

__all__ = ["SecretBox", "load_secret_box"]

_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GENERATED_KEY_ID = "local-1"


class SecretBox:
    """Encrypts with the current key, decrypts with the key a ciphertext names."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise InvalidArgument(f"the current key {current!r} is not among the keys", field="secret_keys")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id) or len(key) != 32:
                raise InvalidArgument(
                    f"secret key {key_id!r}: ids are letters, digits, `._-`; keys are 32 bytes (AES-256)",
                    field="secret_keys",
                )
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    def encrypt(self, plaintext: str, *, context: str) -> tuple[str, str]:
        """(key id, base64 of nonce + ciphertext + tag). `context` (what the value belongs to) is
        authenticated: a ciphertext copied to another config does not decrypt."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self.current].encrypt(nonce, plaintext.encode(), context.encode())
        return self.current, base64.b64encode(nonce + sealed).decode()

    def decrypt(self, key_id: str, ciphertext: str, *, context: str) -> str:
        cipher = self._keys.get(key_id)
        if cipher is None:
            raise FailedPrecondition(f"the secret was encrypted with key {key_id!r}, which is not configured")
        raw = base64.b64decode(ciphertext)
        try:
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
        except InvalidTag as exc:
            raise FailedPrecondition("a secret does not decrypt: it was altered or moved") from exc


def load_secret_box(configured: str, data_dir: Path) -> SecretBox:
    """From `secret_keys` (`id:base64key,...`, the first current), else a key generated in the data
    directory on first start."""
    if not configured.strip():
        key = load_or_create_key("", data_dir / "auth" / "secrets.key")
        return SecretBox({_GENERATED_KEY_ID: key}, _GENERATED_KEY_ID)
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in configured.split(","):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep:
            raise InvalidArgument(
                "secret_keys is `key_id:base64key` separated by commas", field="secret_keys"
            )
        try:
            keys[key_id] = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise InvalidArgument(f"secret key {key_id!r} is not base64", field="secret_keys") from exc
        order.append(key_id)
    return SecretBox(keys, order[0])

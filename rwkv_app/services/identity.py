"""Who owns a conversation, without accounts: a random visitor key that the browser keeps (the UI puts it in
gr.BrowserState, encrypted in localStorage), or on a Space with sign-in enabled, the signed-in Hugging Face user.

The store sees only `owner` strings: "v:" + a hash of the visitor key (the key itself, a bearer secret, is never
stored) or "hf:" + the user name. The browser storage's key name and encryption secret are made once per store
(`browser_secrets`) and kept in it, so every restart and every replica on that store reads the same browser value;
there is no flag for the operator to set.
"""
from __future__ import annotations

import hashlib
import re
import secrets

from ..errors import InputError

KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,128}")


def new_visitor_key() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def check_key(key) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InputError("a visitor key is 32 to 128 letters, digits, '-' or '_' (leave it empty to get a new one)")
    return key


def owner_of(key: str | None = None, user: str | None = None) -> str:
    """The store's owner for a signed-in user (preferred) or a visitor key."""
    if user:
        return f"hf:{user}"
    return "v:" + hashlib.sha256(check_key(key).encode()).hexdigest()[:40]


def browser_secrets(store) -> tuple[str | None, str | None]:
    """(storage key, secret) for gr.BrowserState: kept in the store, the same for every process on it; (None, None)
    without a store (Gradio then picks random ones: nothing is resumed anyway)."""
    if store is None:
        return None, None
    return (store.secret("browser_storage_key", lambda: "rwkv-visitor-" + secrets.token_hex(8)),
            store.secret("browser_secret", lambda: secrets.token_urlsafe(32)))

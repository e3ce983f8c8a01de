"""The operator's switches for the /v1 API: keys, who may reach it without one, how long client states live."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

KEY_ENV = "RWKV_API_KEY"


@dataclass(frozen=True)
class ApiOptions:
    keys: tuple[str, ...] = ()  # empty: no key asked (served on loopback, or anywhere with public=True)
    public: bool = False  # the operator means it: serve /v1 without a key on a non-loopback address
    state_ttl_s: float = 3600.0  # a state unused this long (it and everything under it) is deleted
    max_nodes: int = 4096  # per key and model; beyond it the least recently used conversations go
    max_body_bytes: int = 8 * 2 ** 20


def parse_keys(flag: str | None, environ=None) -> tuple[str, ...]:
    """--api-key, else $RWKV_API_KEY; several keys comma-separated, blanks ignored."""
    raw = flag if flag is not None else (os.environ if environ is None else environ).get(KEY_ENV, "")
    return tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_refusal(host: str, options: ApiOptions) -> str | None:
    """Why /v1 must not be served as configured (None: serve it)."""
    if options.keys or options.public or is_loopback(host):
        return None
    return (f"the OpenAI-compatible /v1 API is off: --host {host} is not loopback and no API key is set. "
            f"Pass --api-key KEY (or set ${KEY_ENV}) so clients must authenticate, or --api-public if an open "
            "API on this address is what you mean")

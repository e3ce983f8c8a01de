"""The shared session store: Redis (`--store redis://host:port/db`), so every replica serves any visitor.

Keys (prefix `rwkv:`): `conv:<owner>:<id>` a hash (name, model, created, updated, version, nbytes, tree: zlib JSON),
`states:<owner>:<id>` a hash node id -> safetensors blob, `owner:<owner>` a sorted set of the owner's ids by last
use, `secret:<name>` a string. A save WATCHes the conversation and its owner's set and writes in one MULTI/EXEC,
so a writer that read an older version gets StoreConflict and nothing of it is written; when a watched key changed
but the version did not (another conversation of the owner's was saved, one was opened or renamed), the save runs
again on fresh reads, so a new conversation's name is chosen against every name stored before it. Every key of a
conversation expires ttl_s after its last save or open (Redis removes it; the owner's list skips ids already gone).
"""
from __future__ import annotations

import time
import zlib

import redis

from ..errors import RwkvError
from .session_store import Clock, Info, SessionStore, Stored

PREFIX = "rwkv:"
META = ("name", "model", "created", "updated", "version", "nbytes")


class RedisStore(SessionStore):
    def __init__(self, url: str, ttl_s: float, quota_bytes: int, clock: Clock = time.time):
        super().__init__(ttl_s, quota_bytes, clock)
        self.url = url
        self.db = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
        try:
            self.db.ping()  # a wrong URL fails at start, not at the first save
        except redis.RedisError as err:
            raise RwkvError(f"cannot reach the session store at {url.split('@')[-1]}: {err}") from None

    def _conv(self, owner: str, conversation: str) -> str:
        return f"{PREFIX}conv:{owner}:{conversation}"

    def _states(self, owner: str, conversation: str) -> str:
        return f"{PREFIX}states:{owner}:{conversation}"

    def _owner(self, owner: str) -> str:
        return f"{PREFIX}owner:{owner}"

    def _info(self, conversation: str, values: list) -> Info | None:
        if values[0] is None:
            return None
        name, model, created, updated, version, nbytes = values
        return Info(conversation, name.decode(), model.decode(), float(created), float(updated), int(version),
                    int(nbytes))

    def list(self, owner: str) -> list[Info]:
        ids = [i.decode() for i in self.db.zrevrange(self._owner(owner), 0, -1)]
        pipe = self.db.pipeline(transaction=False)
        for conversation in ids:
            pipe.hmget(self._conv(owner, conversation), META)
        found, gone = [], []
        for conversation, values in zip(ids, pipe.execute()):
            info = self._info(conversation, values)
            (gone if info is None else found).append(info or conversation)
        if gone:  # expired by Redis: forget them in the owner's list too
            self.db.zrem(self._owner(owner), *gone)
        return found

    def load(self, owner: str, conversation: str) -> Stored | None:
        pipe = self.db.pipeline(transaction=True)  # MULTI/EXEC: a tree and the states of the same version
        pipe.hmget(self._conv(owner, conversation), (*META, "tree"))
        pipe.hgetall(self._states(owner, conversation))
        values, states = pipe.execute()
        info = self._info(conversation, values[:-1])
        if info is None:
            return None
        return Stored(info, zlib.decompress(values[-1]), {k.decode(): bytes(v) for k, v in states.items()})

    def _watched(self, work):
        """Run `work(pipe)` (WATCH, reads, MULTI, writes, EXEC) again on fresh reads while a watched key changes
        under it: a save's own version check then tells a real conflict from another write of the owner's."""
        while True:
            with self.db.pipeline(transaction=True) as pipe:
                try:
                    return work(pipe)
                except redis.WatchError:
                    continue

    def _keep_alive(self, pipe, *keys: str) -> None:
        for key in keys:
            pipe.expire(key, max(1, int(self.ttl_s)))

    def save(self, owner, conversation, name, model, tree, add, keep, expect, mark=None) -> Info:
        conv, states, listed = self._conv(owner, conversation), self._states(owner, conversation), self._owner(owner)
        packed = zlib.compress(tree, 6)

        def work(pipe):
            pipe.watch(conv, states, listed)  # the owner's list too: a new conversation's name and the quota
            version, created, stored_name = pipe.hmget(conv, ("version", "created", "name"))
            if int(version or 0) != expect:
                raise self.conflict(conversation)
            sizes = {k.decode(): int(v) for k, v in self._blob_sizes(pipe, states).items()}
            drop = [n for n in sizes if n not in keep or n in add]
            state_bytes = sum(v for n, v in sizes.items() if n not in drop) + sum(map(len, add.values()))
            others = self._others(pipe, owner, conversation)
            nbytes = len(packed) + state_bytes
            self.check_quota(owner, sum(size for _, size in others), nbytes)
            now = self.clock()
            created = float(created) if created else now
            stored = stored_name.decode() if stored_name else self.new_name(name, mark, (n for n, _ in others))
            pipe.multi()
            pipe.hset(conv, mapping={"name": stored,  # a save never undoes a rename
                                     "model": model, "created": created, "updated": now,
                                     "version": expect + 1, "nbytes": nbytes, "tree": packed})
            if drop:
                pipe.hdel(states, *drop)
            if add:
                pipe.hset(states, mapping=add)
            pipe.zadd(listed, {conversation: now})
            self._keep_alive(pipe, conv, states, listed)
            pipe.execute()
            return Info(conversation, stored, model, created, now, expect + 1, nbytes)
        return self._watched(work)

    def _blob_sizes(self, pipe, states: str) -> dict:
        """node id -> blob size, without fetching the blobs (HSTRLEN per field)."""
        nodes = pipe.hkeys(states)
        return {node: pipe.hstrlen(states, node) for node in nodes}

    def _others(self, pipe, owner: str, conversation: str) -> list[tuple[str, int]]:
        """(name, bytes) of each of the owner's other conversations (read under WATCH of the owner's list)."""
        found = []
        for other in pipe.zrange(self._owner(owner), 0, -1):
            if other.decode() != conversation:
                name, nbytes = pipe.hmget(self._conv(owner, other.decode()), ("name", "nbytes"))
                if name is not None:  # else expired by Redis
                    found.append((name.decode(), int(nbytes or 0)))
        return found

    def touch(self, owner: str, conversation: str) -> bool:
        conv, listed = self._conv(owner, conversation), self._owner(owner)

        def work(pipe):
            pipe.watch(conv)  # deleted meanwhile: not brought back as a husk
            if not pipe.exists(conv):
                return False
            now = self.clock()
            pipe.multi()
            pipe.hset(conv, "updated", now)
            pipe.zadd(listed, {conversation: now})
            self._keep_alive(pipe, conv, self._states(owner, conversation), listed)
            pipe.execute()
            return True
        return self._watched(work)

    def rename(self, owner: str, conversation: str, name: str) -> bool:
        conv = self._conv(owner, conversation)

        def work(pipe):
            pipe.watch(conv)
            if not pipe.exists(conv):
                return False
            pipe.multi()
            pipe.hset(conv, "name", name)
            pipe.execute()
            return True
        return self._watched(work)

    def delete(self, owner: str, conversation: str) -> bool:
        pipe = self.db.pipeline(transaction=True)
        pipe.delete(self._conv(owner, conversation), self._states(owner, conversation))
        pipe.zrem(self._owner(owner), conversation)
        return pipe.execute()[0] > 0

    def delete_owner(self, owner: str) -> int:
        ids = [i.decode() for i in self.db.zrange(self._owner(owner), 0, -1)]
        return sum(self.delete(owner, conversation) for conversation in ids)

    def usage(self, owner: str) -> int:
        return sum(info.nbytes for info in self.list(owner))

    def owners(self) -> list[str]:
        start = len(PREFIX + "owner:")
        return sorted(key.decode()[start:] for key in self.db.scan_iter(match=PREFIX + "owner:*"))

    def expire(self) -> int:
        return 0  # Redis expires each key ttl_s after its last save by itself

    def secret(self, name: str, make) -> str:
        key = f"{PREFIX}secret:{name}"
        self.db.set(key, make(), nx=True)
        return self.db.get(key).decode()

    def close(self) -> None:
        self.db.close()


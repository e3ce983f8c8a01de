"""The default session store: one SQLite file in the data folder, no set-up, one machine.

WAL journal, and every save is one `BEGIN IMMEDIATE` transaction (version check, tree, state blobs, quota), so a
process killed at any point leaves the last committed version whole. The tree JSON is stored zlib-compressed.
"""
from __future__ import annotations

import sqlite3
import threading
import time
import zlib
from pathlib import Path

from .session_store import Clock, Info, SessionStore, Stored

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (owner TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
  model TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, version INTEGER NOT NULL,
  nbytes INTEGER NOT NULL, tree BLOB NOT NULL, PRIMARY KEY (owner, id));
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated);
CREATE TABLE IF NOT EXISTS states (owner TEXT NOT NULL, conversation TEXT NOT NULL, node TEXT NOT NULL,
  blob BLOB NOT NULL, PRIMARY KEY (owner, conversation, node));
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
INFO = "id, name, model, created, updated, version, nbytes"
EXPIRE_EVERY_S = 600.0  # saves and listings run the TTL sweep at most this often


class SqliteStore(SessionStore):
    def __init__(self, path: str | Path, ttl_s: float, quota_bytes: int, clock: Clock = time.time):
        super().__init__(ttl_s, quota_bytes, clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()  # one connection, shared by the server's threads
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
        self._db.executescript(SCHEMA)
        self._swept = 0.0
        self.expire()

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _transaction(self, work):
        """Run `work(db)` in one write transaction (rolled back if it raises)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def list(self, owner: str) -> list[Info]:
        self._sweep()
        rows = self._query(f"SELECT {INFO} FROM conversations WHERE owner = ? ORDER BY updated DESC", (owner,))
        return [Info(*row) for row in rows]

    def load(self, owner: str, conversation: str) -> Stored | None:
        def work(db):  # one transaction: a tree and the states of the same version
            row = db.execute(f"SELECT {INFO}, tree FROM conversations WHERE owner = ? AND id = ?",
                             (owner, conversation)).fetchone()
            if row is None:
                return None
            states = db.execute("SELECT node, blob FROM states WHERE owner = ? AND conversation = ?",
                                (owner, conversation)).fetchall()
            return Stored(Info(*row[:-1]), zlib.decompress(row[-1]), {node: bytes(blob) for node, blob in states})
        return self._transaction(work)

    def save(self, owner, conversation, name, model, tree, add, keep, expect, mark=None) -> Info:
        self._sweep()
        packed = zlib.compress(tree, 6)

        def work(db):
            row = db.execute("SELECT version, created, name FROM conversations WHERE owner = ? AND id = ?",
                             (owner, conversation)).fetchone()
            if (row[0] if row else 0) != expect:
                raise self.conflict(conversation)
            kept = [n for (n,) in db.execute("SELECT node FROM states WHERE owner = ? AND conversation = ?",
                                              (owner, conversation)) if n in keep and n not in add]
            db.execute(f"DELETE FROM states WHERE owner = ? AND conversation = ? AND node NOT IN "
                       f"({','.join('?' * len(kept))})", (owner, conversation, *kept))
            db.executemany("INSERT INTO states VALUES (?, ?, ?, ?)",
                           [(owner, conversation, node, blob) for node, blob in add.items()])
            (state_bytes,) = db.execute("SELECT COALESCE(SUM(LENGTH(blob)), 0) FROM states WHERE owner = ? AND "
                                        "conversation = ?", (owner, conversation)).fetchone()
            others = db.execute("SELECT name, nbytes FROM conversations WHERE owner = ? AND id != ?",
                                (owner, conversation)).fetchall()
            nbytes = len(packed) + state_bytes
            self.check_quota(owner, sum(size for _, size in others), nbytes)
            now, stored = self.clock(), row[2] if row else self.new_name(name, mark, (n for n, _ in others))
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, id) DO "
                       "UPDATE SET model = excluded.model, updated = excluded.updated, version = excluded.version, "
                       "nbytes = excluded.nbytes, tree = excluded.tree",
                       (owner, conversation, stored, model, row[1] if row else now, now, expect + 1, nbytes, packed))
            return Info(conversation, stored, model, row[1] if row else now, now, expect + 1, nbytes)
        return self._transaction(work)

    def touch(self, owner: str, conversation: str) -> bool:
        return self._transaction(lambda db: db.execute("UPDATE conversations SET updated = ? WHERE owner = ? AND "
                                                       "id = ?", (self.clock(), owner, conversation)).rowcount > 0)

    def rename(self, owner: str, conversation: str, name: str) -> bool:
        return self._transaction(lambda db: db.execute("UPDATE conversations SET name = ? WHERE owner = ? AND id = ?",
                                                       (name, owner, conversation)).rowcount > 0)

    def delete(self, owner: str, conversation: str) -> bool:
        def work(db):
            db.execute("DELETE FROM states WHERE owner = ? AND conversation = ?", (owner, conversation))
            gone = db.execute("DELETE FROM conversations WHERE owner = ? AND id = ?", (owner, conversation))
            return gone.rowcount > 0
        return self._transaction(work)

    def delete_owner(self, owner: str) -> int:
        def work(db):
            db.execute("DELETE FROM states WHERE owner = ?", (owner,))
            return db.execute("DELETE FROM conversations WHERE owner = ?", (owner,)).rowcount
        return self._transaction(work)

    def usage(self, owner: str) -> int:
        return self._query("SELECT COALESCE(SUM(nbytes), 0) FROM conversations WHERE owner = ?", (owner,))[0][0]

    def owners(self) -> list[str]:
        return [owner for (owner,) in self._query("SELECT DISTINCT owner FROM conversations ORDER BY owner")]

    def expire(self) -> int:
        cutoff = self.clock() - self.ttl_s
        self._swept = self.clock()

        def work(db):
            db.execute("DELETE FROM states WHERE (owner, conversation) IN (SELECT owner, id FROM conversations "
                       "WHERE updated < ?)", (cutoff,))
            return db.execute("DELETE FROM conversations WHERE updated < ?", (cutoff,)).rowcount
        return self._transaction(work)

    def _sweep(self) -> None:
        if self.clock() - self._swept >= min(EXPIRE_EVERY_S, self.ttl_s):
            self.expire()

    def secret(self, name: str, make) -> str:
        def work(db):
            db.execute("INSERT OR IGNORE INTO secrets VALUES (?, ?)", (name, make()))
            return db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0]
        return self._transaction(work)

    def close(self) -> None:
        with self._lock:
            self._db.close()

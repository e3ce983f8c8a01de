"""The session stores against the real thing: SQLite in a temporary folder and a real redis-server. The same
contract for both: save/load round trip, only a visitor's own conversations, compare-and-set versions (a stale
writer is refused and writes nothing), the per-visitor quota, TTL expiry, delete all, shared secrets."""
import threading

import pytest

from rwkv_app.services.session_store import QuotaExceeded, StoreConflict
from rwkv_app.services.stores import open_store


MIB = 2 ** 20


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    made = []

    def make(ttl_s=3600.0, quota=MIB, clock=None):
        if request.param == "sqlite":
            spec = str(tmp_path / "data")
        else:
            import redis
            spec = request.getfixturevalue("redis_url")
            if not made:
                redis.Redis.from_url(spec).flushdb()
        store = open_store(spec, ttl_s, quota, clock or Clock())
        made.append(store)
        return store
    yield make
    for store in made:
        store.close()


def test_a_conversation_round_trips_with_its_states(make_store):
    store = make_store()
    info = store.save("alice", "c1", "First", "demo", b'{"tree": 1}', {"n1": b"s1", "n2": b"s2"}, set(), 0)
    assert (info.id, info.name, info.version) == ("c1", "First", 1) and store.list("alice") == [info]
    stored = store.load("alice", "c1")
    assert stored.tree == b'{"tree": 1}' and stored.states == {"n1": b"s1", "n2": b"s2"}
    assert (stored.info.name, stored.info.model, stored.info.version) == ("First", "demo", 1)
    # the next commit adds one state, keeps one, drops the other; the name stays
    info = store.save("alice", "c1", "ignored", "demo", b'{"tree": 2}', {"n3": b"s3"}, {"n1"}, 1, mark="")
    assert (info.name, info.version) == ("First", 2) and store.list("alice") == [info]
    stored = store.load("alice", "c1")
    assert stored.tree == b'{"tree": 2}' and stored.states == {"n1": b"s1", "n3": b"s3"}
    assert stored.info.name == "First" and stored.info.nbytes >= 4


def test_a_visitor_never_sees_another_visitors_conversations(make_store):
    store = make_store()
    store.save("alice", "c1", "Alice's", "demo", b"{}", {}, set(), 0)
    store.save("bob", "c2", "Bob's", "demo", b"{}", {}, set(), 0)
    assert [i.id for i in store.list("alice")] == ["c1"] and [i.id for i in store.list("bob")] == ["c2"]
    assert store.load("bob", "c1") is None and store.load("alice", "c2") is None
    assert not store.delete("bob", "c1") and not store.rename("bob", "c1", "mine now")
    assert store.load("alice", "c1").info.name == "Alice's"


def test_a_stale_writer_is_refused_and_writes_nothing(make_store):
    store = make_store()
    store.save("alice", "c1", "x", "demo", b"v1", {"a": b"1"}, set(), 0)
    store.save("alice", "c1", "x", "demo", b"v2", {}, {"a"}, 1)  # replica A saves version 2
    with pytest.raises(StoreConflict):  # replica B read version 1
        store.save("alice", "c1", "x", "demo", b"B's", {"b": b"2"}, set(), 1)
    with pytest.raises(StoreConflict):  # a new conversation cannot overwrite an existing one
        store.save("alice", "c1", "x", "demo", b"new", {}, set(), 0)
    stored = store.load("alice", "c1")
    assert stored.tree == b"v2" and stored.states == {"a": b"1"} and stored.info.version == 2


def test_concurrent_writers_of_one_conversation_are_serialised(make_store):
    store = make_store()
    store.save("alice", "c1", "x", "demo", b"v1", {}, set(), 0)
    outcomes = []

    def write(label):
        try:
            store.save("alice", "c1", "x", "demo", label.encode() * 1000, {label: label.encode()}, set(), 1)
            outcomes.append(label)
        except StoreConflict:
            outcomes.append("conflict")
    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "conflict"]
    assert len(winners) == 1
    stored = store.load("alice", "c1")  # exactly the winner's tree and states, nothing of the others
    assert stored.tree == winners[0].encode() * 1000 and stored.states == {winners[0]: winners[0].encode()}


def test_the_quota_refuses_with_a_clear_message_and_keeps_the_last_version(make_store):
    store = make_store(quota=10_000)
    store.save("alice", "c1", "x", "demo", b"{}", {"a": bytes(4000)}, set(), 0)
    with pytest.raises(QuotaExceeded, match=r"limit of .* MB per visitor.*Delete"):
        store.save("alice", "c2", "y", "demo", b"{}", {"b": bytes(7000)}, set(), 0)
    assert store.load("alice", "c2") is None and [i.id for i in store.list("alice")] == ["c1"]
    store.save("bob", "c3", "z", "demo", b"{}", {"b": bytes(7000)}, set(), 0)  # per visitor, not per server
    assert store.usage("alice") < 10_000 <= store.usage("alice") + store.usage("bob")


def test_delete_all_my_data_removes_only_mine(make_store):
    store = make_store()
    for i in range(3):
        store.save("alice", f"c{i}", "x", "demo", b"{}", {"n": b"s"}, set(), 0)
    store.save("bob", "b1", "x", "demo", b"{}", {}, set(), 0)
    assert store.delete_owner("alice") == 3
    assert store.list("alice") == [] and store.usage("alice") == 0 and store.load("alice", "c0") is None
    assert [i.id for i in store.list("bob")] == ["b1"]


def test_the_list_is_most_recently_used_first_and_rename_sticks(make_store):
    clock = Clock()
    store = make_store(clock=clock)
    for i in range(3):
        clock.now += 10
        store.save("alice", f"c{i}", f"n{i}", "demo", b"{}", {}, set(), 0)
    clock.now += 10
    store.save("alice", "c0", "n0", "demo", b"{}", {}, set(), 1)
    assert [i.id for i in store.list("alice")] == ["c0", "c2", "c1"]
    assert store.rename("alice", "c1", "Renamed") and store.list("alice")[-1].name == "Renamed"


def test_opening_a_conversation_puts_it_first_and_keeps_its_version(make_store):
    """touch: what the services call when a visitor opens a conversation, so the list (and a reload) finds the one
    last opened; the version stays, so the tab that has it open still saves in place; a restart sees it."""
    clock = Clock()
    store = make_store(clock=clock)
    for i in range(3):
        clock.now += 10
        store.save("alice", f"c{i}", f"n{i}", "demo", b"{}", {"n": b"s"}, set(), 0)
    clock.now += 10
    assert store.touch("alice", "c0")
    assert [i.id for i in store.list("alice")] == ["c0", "c2", "c1"] and store.list("alice")[0].updated == clock.now
    assert not store.touch("bob", "c0") and not store.touch("alice", "gone") and store.load("bob", "c0") is None
    assert [i.id for i in make_store(clock=clock).list("alice")] == ["c0", "c2", "c1"]  # a restart or a replica
    clock.now += 10
    assert store.save("alice", "c0", "n0", "demo", b"v2", {}, {"n"}, 1).version == 2  # no conflict
    assert store.load("alice", "c0").states == {"n": b"s"}
    store.delete("alice", "c1")
    assert not store.touch("alice", "c1") and [i.id for i in store.list("alice")] == ["c0", "c2"]


def test_new_conversations_saved_at_the_same_instant_get_distinct_names(make_store):
    """Two tabs (or replicas) of one visitor naming new conversations at once: the name is chosen inside the save's
    transaction, against every name stored before it, so no two are alike. A name given without a mark is kept."""
    store = make_store()
    store.save("alice", "typed", "Hello", "demo", b"{}", {}, set(), 0)  # a name the visitor typed: taken
    start = threading.Barrier(4)
    names, errors = [], []

    def save(i):
        start.wait()
        try:
            names.append(store.save("alice", f"c{i}", "Hello", "demo", b"{}", {f"n{i}": b"s"}, set(), 0,
                                    mark="").name)
        except Exception as err:  # noqa: BLE001 (reported by the assertion below)
            errors.append(err)
    threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(names) == ["Hello (2)", "Hello (3)", "Hello (4)", "Hello (5)"]
    assert sorted(i.name for i in store.list("alice")) == ["Hello", *sorted(names)]
    copy = store.save("alice", "c9", "Hello", "demo", b"{}", {}, set(), 0, mark="copy")
    assert copy.name == "Hello (copy)" and store.save("bob", "b1", "Hello", "demo", b"{}", {}, set(), 0,
                                                       mark="").name == "Hello"  # per visitor


def test_secrets_are_made_once_and_shared(make_store):
    store = make_store()
    first = store.secret("browser", lambda: "one")
    assert first == "one" and store.secret("browser", lambda: "two") == "one"
    again = make_store()  # another process on the same store (a restart, a replica)
    assert again.secret("browser", lambda: "three") == "one"


def test_sqlite_ttl_expiry_removes_the_data(tmp_path):
    clock = Clock()
    store = open_store(str(tmp_path), ttl_s=100.0, quota_bytes=MIB, clock=clock)
    store.save("alice", "old", "x", "demo", b"{}", {"n": b"s" * 100}, set(), 0)
    clock.now += 60
    store.save("alice", "new", "y", "demo", b"{}", {}, set(), 0)
    clock.now += 60
    assert store.expire() == 1
    assert [i.id for i in store.list("alice")] == ["new"] and store.load("alice", "old") is None
    assert store._query("SELECT COUNT(*) FROM states")[0][0] == 0  # its states went with it
    store.close()


def test_redis_ttl_expiry_removes_the_data(redis_url):
    import time

    import redis

    store = open_store(redis_url, ttl_s=1.0, quota_bytes=MIB)
    store.save("ttl-owner", "c1", "x", "demo", b"{}", {"n": b"s"}, set(), 0)
    client = redis.Redis.from_url(redis_url)
    assert client.exists("rwkv:conv:ttl-owner:c1", "rwkv:states:ttl-owner:c1") == 2
    for _ in range(100):  # Redis itself removes the keys about a second after the save
        if not client.exists("rwkv:conv:ttl-owner:c1", "rwkv:states:ttl-owner:c1", "rwkv:owner:ttl-owner"):
            break
        time.sleep(0.1)
    assert store.list("ttl-owner") == [] and store.load("ttl-owner", "c1") is None
    assert not client.exists("rwkv:conv:ttl-owner:c1", "rwkv:states:ttl-owner:c1", "rwkv:owner:ttl-owner")
    store.close()

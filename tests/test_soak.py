"""The soak test's pieces (action mix, output parsing, verdicts, report), the operator stats, and (slow) a
short soak end to end against the real app in a subprocess."""
from collections import Counter

import pytest

from benchmarks.report import write_section
from benchmarks.soak_calls import Sample, generated_text, is_refusal, raw_payload
from benchmarks.soak_report import (FAIL, NOT_JUDGED, PASS, RoundMemory, SoakResult, missed, percentile,
                                        render, verdicts)
from benchmarks.soak_user import ACTIONS, UserLog, plan

MIB = 2 ** 20
FREED = {"sessions": 0, "open_user_sessions": 0, "session_trees": 0, "rss_trimmed_bytes": 500 * MIB}


def test_plan_is_seeded_and_a_short_soak_does_every_action():
    names = {name for name, _ in ACTIONS}
    plans = [plan(0, user, 4, 5) for user in range(4)]
    assert plans == [plan(0, user, 4, 5) for user in range(4)]  # same seed, same actions
    assert all(len(p) == 5 for p in plans)
    assert {action for p in plans for action in p} == names  # 4 users x 5 rounds cover all 8 actions
    assert plan(0, 0, 16, 50) != plan(1, 0, 16, 50)  # another seed, another mix


def test_plan_follows_the_weights():
    counts = Counter(plan(3, 0, 1, 2000))
    weights = dict(ACTIONS)
    assert set(counts) == set(weights)
    for name, weight in weights.items():
        assert counts[name] / 2000 == pytest.approx(weight / sum(weights.values()), abs=0.03)


def test_generated_text_of_each_endpoint_output():
    assert generated_text("so far") == "so far"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"text": "Hel", "type": "text"}]}]
    assert generated_text(chat) == "Hel"
    assert generated_text([{"role": "user", "content": "hi"}]) == ""  # no reply yet
    assert generated_text(("a", "bc", "", "")) == "a\x00bc\x00\x00"
    assert generated_text(None) == ""


def test_only_busy_is_an_expected_refusal():
    assert is_refusal("The server is busy (queue full). Please try again in a moment.")
    assert not is_refusal("this session is already generating: wait for it or press Stop")
    assert not is_refusal("generation failed: nan in logits")


def test_sample_rate():
    assert Sample("/generate", 0.2, 33, 0.5).rate == pytest.approx(64.0)
    assert Sample("/generate", 0.2, 1, 0.0).rate is None
    assert Sample("/generate", None, 0, 0.0).rate is None


def test_raw_payload_puts_the_state_where_the_endpoint_takes_it():
    class FakeClient:
        session_hash = "abc"
        config = {"components": [{"id": 1, "type": "textbox"}, {"id": 2, "type": "state"},
                                 {"id": 3, "type": "slider"}],
                  "dependencies": [{"id": 7, "api_name": "generate", "inputs": [1, 3, 2]}]}

    payload = raw_payload(FakeClient(), "/generate", ("prompt", 16))
    assert payload["data"] == ["prompt", 16, None] and payload["fn_index"] == 7 and payload["session_hash"] == "abc"
    with pytest.raises(KeyError):
        raw_payload(FakeClient(), "/nope", ())


def test_percentile():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([], 50) != percentile([], 50)  # NaN


def result(rss_mib: list[float], errors=(), refusals=(), final=FREED) -> SoakResult:
    log = UserLog(0, samples=[Sample("/generate", 0.3, 20, 0.4), Sample("/chat", 0.5, 10, 0.3)],
                  actions={"generate": len(rss_mib)}, errors=list(errors), refusals=list(refusals))
    memory = [RoundMemory(i + 1, 1.0, int(m * MIB), int(m * MIB), sessions=1, trees=1, tensor_bytes=18 * MIB,
                          nodes=40 + i, kept_bytes=MIB * (i + 1)) for i, m in enumerate(rss_mib)]
    return SoakResult(1, len(rss_mib), (16, 48), [log], memory, dict(final), 2.0, 120.0, "test machine")


def test_verdicts_from_given_numbers():
    flat = [500.0] * 9 + [600.0] + [610.0] * 40  # +1.7% from round 10 to 50
    assert [v for _, _, v in verdicts(result(flat))] == [PASS, PASS, PASS]
    assert not missed(result(flat))
    grows = [600.0] * 10 + [600 + 2 * i for i in range(1, 41)]  # +13%
    assert [v for _, _, v in verdicts(result(grows))] == [PASS, FAIL, PASS]
    assert missed(result(grows))
    assert verdicts(result(flat, errors=["user 0, chat: AppError: boom"]))[0][2] == FAIL
    assert verdicts(result(flat, refusals=["user 0, chat: AppError: busy"]))[0][2] == PASS  # refusals are apart
    left = {**FREED, "sessions": 2, "session_trees": 2}
    assert verdicts(result(flat, final=left))[2][2] == FAIL
    assert verdicts(result([500.0] * 5))[1][2] == NOT_JUDGED  # too short to judge growth
    assert not missed(result([500.0] * 5))


def test_waves_every_wave_must_free_its_sessions():
    one = result([500.0] * 20)
    one.waves = [dict(FREED), {**FREED, "rss_trimmed_bytes": 501 * MIB}]
    assert verdicts(one)[2][2] == PASS and "1 users x 20 rounds x 2 waves" in verdicts(one)[0][0]
    assert "wave 2: 0 sessions, 0 trees, RSS after gc + malloc_trim 501.0 MiB" in render(one, "cmd")
    one.waves[0] = {**FREED, "session_trees": 1}  # the first wave left a tree behind
    assert verdicts(one)[2][2] == FAIL


def test_report_renders_the_tables_verdicts_and_errors():
    text = render(result([500.0] * 20, errors=["user 0, fork: AppError: boom"]), "python -m benchmarks soak")
    assert "| target | measured | verdict |" in text and "**FAIL**" in text and "**PASS**" in text
    assert "| 0 | 20 | 1 | 2 | 0.40 / 0.50 | 39 / 30 | 1 | 0 |" in text  # TTFT median/p95, tok/s median/p5
    assert "| 20 | 1.0 s | 500.0 MiB |" in text and "| 4 |" not in text  # rounds 1-3, every 5th, the last
    assert "`user 0, fork: AppError: boom`" in text
    assert "kept states 10 -> 20 MiB, their trees 49 -> 59 nodes" in text  # how much of the growth is history
    assert "the rest 490 -> 480 MiB, -2.0%" in text  # RSS after trimming less the kept states
    assert "Rerun: `python -m benchmarks soak`." in text


def test_the_soak_section_replaces_itself_and_keeps_the_others(tmp_path):
    path = tmp_path / "RELIABILITY.md"
    path.write_text("# Reliability\n\n## Soak test: figures\n\nold\n\n## Faults survived\n\nkept\n")
    write_section(path, "Soak test: figures", "python -m benchmarks soak", "new table\n")
    text = path.read_text()
    assert "old" not in text and "new table" in text and "## Faults survived\n\nkept" in text
    write_section(tmp_path / "fresh.md", "Soak test: figures", "cmd", "body\n", header="# Reliability\n")
    assert (tmp_path / "fresh.md").read_text().startswith("# Reliability\n\n## Soak test: figures")


def test_operator_stats_count_live_sessions_and_freed_trees(tmp_path):
    pytest.importorskip("gradio")
    from rwkv_app.services.stats import server_stats

    from .app_helpers import tiny_playground, write_tiny_model

    playground = tiny_playground(write_tiny_model(tmp_path / "tiny"))
    try:
        before = server_stats(playground)
        sessions = [playground.new_session() for _ in range(3)]
        live = server_stats(playground)
        # counted across the process: other tests' sessions may still be alive, so compare with before
        assert live["sessions"] == 3 and live["open_user_sessions"] == before["open_user_sessions"] + 3
        assert live["session_trees"] == before["session_trees"] + 3
        assert live["session_nodes"] >= 3 and live["session_kept_bytes"] > before["session_kept_bytes"]
        for session in sessions:
            session.close()
        after = server_stats(playground)
        assert after["sessions"] == 0 and after["open_user_sessions"] == before["open_user_sessions"]
        assert after["session_trees"] == before["session_trees"]  # every closed session's tree is gone
        assert after["session_kept_bytes"] == before["session_kept_bytes"]
        assert after["rss_bytes"] > 0 and after["rss_trimmed_bytes"] > 0
    finally:
        playground.close()


@pytest.mark.slow
def test_short_soak_against_the_real_app(tmp_path):
    pytest.importorskip("gradio_client")
    from benchmarks.soak import SoakSettings, run_soak

    outcome = run_soak(SoakSettings(users=4, rounds=5, log_path=tmp_path / "app.log"), log=lambda _: None)
    assert outcome.errors == []
    assert len(outcome.memory) == 5 and all(m.rss > 0 for m in outcome.memory)
    assert outcome.final["sessions"] == 0 and outcome.final["session_trees"] == 0  # every session freed
    assert sum(len(log.samples) for log in outcome.logs) >= 10
    assert all(s.ttft is not None for log in outcome.logs for s in log.samples if s.updates)
    assert sum(log.sessions for log in outcome.logs) > 4  # the disconnect action opened a new session


def test_a_restart_soak_passes_only_when_no_saved_node_is_lost():
    memory = [RoundMemory(r, 1.0, 500 * MIB, 500 * MIB, 4, 4, 0, 0, 0) for r in range(1, 7)]
    log = UserLog(0)

    def result(lost):
        return SoakResult(1, 6, (16, 48), [log], memory, FREED, 5.0, 60.0, "test machine",
                          restarts=[{"seconds": 30.0, "nodes": 20, "lost": lost, "reconnects": 1}])
    rows = {target: verdict for target, _, verdict in verdicts(result(0))}
    assert rows["1 restarts (kill -9): no saved node lost"] == PASS
    assert NOT_JUDGED in rows.values()  # memory growth across processes is not judged
    assert not missed(result(0)) and missed(result(1))
    assert "0 of 20 nodes lost" in render(result(0), "python -m benchmarks soak --restart-every 2")

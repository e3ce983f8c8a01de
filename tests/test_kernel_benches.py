"""`python -m kernels.bench` and `python -m kernels.rwkv7.bench` on tiny shapes: every contender runs and is printed,
the C++ loop where the extension runs, and a line naming why not where it does not."""
from kernels import bench as bench4
from kernels import wkv_loops
from kernels.rwkv7 import bench as bench7


def test_rwkv4_wkv_bench_prints_every_contender(capsys):
    assert bench4.main(["--seq-len", "9", "--channels", "40", "--batch", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "B=2 T=9 C=40" in out and "chunked cpu" in out and "cpu step" in out
    assert ("C++ token loop" in out and "x the chunked cpu path" in out) if wkv_loops.load() else "not run" in out


def test_rwkv7_wkv_bench_prints_every_contender(capsys):
    assert bench7.main(["--seq-len", "9", "--heads", "2", "--head-size", "16", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "T=9 H=2 N=16" in out and "chunked cpu" in out
    assert ("C++ token loop" in out and "x the chunked cpu path" in out) if wkv_loops.load() else "not run" in out


def test_benches_say_why_the_cpp_loop_did_not_run(capsys, monkeypatch):
    monkeypatch.setattr(wkv_loops, "load", lambda: None)
    bench4.main(["--seq-len", "3", "--channels", "16", "--repeats", "1"])
    bench7.main(["--seq-len", "3", "--heads", "1", "--head-size", "16", "--repeats", "1"])
    assert capsys.readouterr().out.count("C++ token loop: not run (the C++ extension does not run here") == 2

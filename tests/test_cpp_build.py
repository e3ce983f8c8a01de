"""kernels/cpp_build.py's two extensions: which CPUs each runs on, and the WKV loops' build holding no BF16
instruction (a CPU with AVX512F but without AVX512-BF16, common in clouds, runs it; this machine has both, so the
build itself is inspected)."""
import re
import shutil
import subprocess

import pytest

from kernels import cpp_build, int8_cpu, wkv_loops

BF16_MNEMONICS = re.compile(r"\s(vdpbf16ps|vcvtne2ps2bf16|vcvtneps2bf16)\s")


def mnemonics_in(module) -> set[str]:
    listing = subprocess.run(["objdump", "-d", module.__file__], capture_output=True, text=True, check=True).stdout
    return set(BF16_MNEMONICS.findall(listing))


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
@pytest.mark.skipif(wkv_loops.load() is None or int8_cpu.load() is None, reason="the extensions do not run here")
def test_the_wkv_loops_hold_no_bf16_instruction_and_the_int8_kernel_does():
    assert mnemonics_in(wkv_loops.load()) == set()
    assert "vdpbf16ps" in mnemonics_in(int8_cpu.load())  # the check sees them where they are


@pytest.mark.parametrize("flags, wkv_reason, int8_reason", [
    ({"avx512f", "avx512_bf16"}, "", ""),
    ({"avx512f"}, "", "this CPU lacks avx512_bf16"),  # Skylake-SP to Ice Lake: the WKV loops only
    ({"avx2"}, "this CPU lacks avx512f", "this CPU lacks avx512_bf16"),
])
def test_each_extension_runs_where_its_instructions_are(monkeypatch, flags, wkv_reason, int8_reason):
    monkeypatch.setattr(cpp_build, "cpu_flags", lambda: frozenset(flags))
    assert wkv_loops.unsupported_reason() == wkv_reason and int8_cpu.unsupported_reason() == int8_reason


def test_each_extension_has_its_own_off_switch(monkeypatch):
    monkeypatch.setenv(wkv_loops.OFF_SWITCH, "0")
    assert wkv_loops.unsupported_reason() == "RWKV_WKV_LOOPS=0"
    assert int8_cpu.unsupported_reason() in ("", "this CPU lacks avx512_bf16")

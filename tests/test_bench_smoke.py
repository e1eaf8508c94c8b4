"""Smoke test of the benchmark script: it runs, its agreement check passes, and it writes the JSON it promises.

Behaviour only: timings are never asserted (they depend on the machine).
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_xor_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--sizes", "xor", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, f"bench/run.py exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "agreement check ok" in proc.stdout

    data = json.loads(out.read_text())
    assert data["failed"] == []
    assert list(data["results"]) == ["xor"]
    xor = data["results"]["xor"]
    assert xor["config"]["batch"] == 4 and xor["config"]["layers"] == [2, 8, 1]

    expected = {"bpmagic", "hand"}
    if importlib.util.find_spec("torch") is not None:
        expected.add("torch")
    else:  # torch absent: the script must say so rather than drop it silently
        assert "torch" in xor["unavailable"]
    assert set(xor["median_s"]) == expected
    for impl in expected:
        t = xor["median_s"][impl]
        assert isinstance(t, float) and t > 0
        assert len(xor["samples_s"][impl]) == xor["rounds"]
    assert xor["ratio_bpmagic_over_hand"] > 0
    assert isinstance(xor["pass_bpmagic_over_hand"], bool)

"""Live controls during a blocking cell on other ipykernels: 6.29 (many JupyterHubs) and the newest on PyPI.

Each case runs tests/support/live_controls_probe.py with the Python of a second environment (tests/support/ipykernel_envs.py builds
and caches them from PyPI): a real kernel of that environment — its stock `python3` kernelspec or the `backprop`
one — started through jupyter_client, slider messages built as a browser sends them (plain, and subshell-tagged
where the kernel supports subshells, as JupyterLab >= 4.4 does), and Stop clicked while the cell trains.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ipykernel_envs import IPYKERNEL_629, IPYKERNEL_NEWEST, ensure_env, python_of

pytestmark = pytest.mark.slow
PROBE = Path(__file__).resolve().parents[1] / "support" / "live_controls_probe.py"

# (ipykernel, kernelspec, tagged) -> the mechanism bpmagic must choose there by feature detection
CASES = {
    (IPYKERNEL_629, "python3", False): "ui-poll",
    (IPYKERNEL_629, "backprop", False): "ui-poll",
    (IPYKERNEL_NEWEST, "python3", False): "subshell",
    (IPYKERNEL_NEWEST, "python3", True): "subshell",
    (IPYKERNEL_NEWEST, "backprop", False): "subshell",
    (IPYKERNEL_NEWEST, "backprop", True): "subshell",
}


def run_probe(version, *args, env_vars=None):
    env = ensure_env(version)
    # the environment's kernelspecs first, whatever a user has installed in ~/.local/share/jupyter
    environ = dict(os.environ, JUPYTER_PATH=str(env / "share" / "jupyter"), **(env_vars or {}))
    environ.pop("PYTHONPATH", None)
    done = subprocess.run([str(python_of(env)), str(PROBE), *args], capture_output=True, text=True,
                          timeout=1200, env=environ)
    assert done.returncode == 0, f"the probe failed on ipykernel {version}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version,kernel,tagged", list(CASES), ids=lambda v: str(v))
def test_a_slider_moved_during_a_blocking_cell_applies_mid_training(version, kernel, tagged):
    r = run_probe(version, kernel, *(["--tagged"] if tagged else []))
    print(json.dumps(r), file=sys.stderr)  # the figures, shown with -rA or on failure
    assert r["ipykernel"] == version
    assert r["mechanism"] == CASES[version, kernel, tagged], r["why_none"]
    assert r["supports_subshells"] == (version != IPYKERNEL_629)  # what decides whether a browser tags messages
    assert r["status"] == "stopped" and r["cell_status"] == "ok"  # Stop, clicked mid-cell, ended the cell
    assert r["lr_first"] == pytest.approx(0.1) and r["lr_last"] == pytest.approx(r["last_sent"])
    assert 10 < r["first_new_step"] < r["steps"] - 10  # the first value applied mid-training
    assert len(r["effect_ms"]) >= 5  # most values were trained with (a busy machine may merge two)
    assert "apply when this cell ends" not in r["cell_output"]
    # Run All: a cell sent meanwhile ran after the training cell, once, with its own output
    assert r["queued_status"] == "ok" and r["queued_after_cell"] and r["queued_output"] == "queued cell ran\n"


def test_without_a_mechanism_the_cell_says_so_and_values_apply_after_it():
    """The same kernel with both mechanisms turned off: the probe's messages wait for the cell (so the test above
    can fail), and one line tells the learner why and what to do."""
    r = run_probe(IPYKERNEL_NEWEST, "python3", "--expect-not-live", env_vars={"BPMAGIC_LIVE_CONTROLS": "off"})
    assert r["mechanism"] == "none" and r["why_none"] == "BPMAGIC_LIVE_CONTROLS=off"
    assert r["status"] == "interrupted"  # training went on after Stop until the Interrupt
    assert r["lr_first"] == r["lr_last"] == pytest.approx(0.1) and r["effect_ms"] == []
    notice = [line for line in r["cell_output"].splitlines() if "apply when this cell ends" in line]
    assert notice == ["bpmagic: the controls apply when this cell ends on this kernel "
                      f"(ipykernel {IPYKERNEL_NEWEST}: BPMAGIC_LIVE_CONTROLS=off); "
                      "%%backprop --background keeps them live."]
    assert r["queued_status"] == "ok" and r["queued_output"] == "queued cell ran\n"

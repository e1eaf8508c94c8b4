"""Hostile and malformed comm messages, sent to a real kernel while a %%backprop cell trains with its dashboard.

Messages are built as @jupyter-widgets sends them (``comm_msg`` with ``{method: "update", state, buffer_paths}``
and binary buffers, ``request_state``, ``custom``), then broken on purpose: wrong types, NaN / ±inf / 1e308 /
negative / zero, strings, lists, dicts and None where numbers belong, unknown keys and methods, missing and extra
buffers, kernel-owned traits (min, max, version) set from outside, comm_open for unknown targets, comm_close of live
and unknown comms, messages to unknown comm ids, and floods of Pause / Step / Stop clicks. A fixed seed keeps it
deterministic. Afterwards the kernel still answers, no control ever held a value outside its range, and training
went on unharmed.
"""
import collections
import json
import math
import time
import uuid

import numpy as np
import pytest
from kernel_client import CELL, SETUP, Kernel

OPTIONS = "--steps 100000000 --lr 0.1 --optimizer momentum --momentum 0.5 --weight-decay 0.001"
# the ranges the dashboard offers for these options (panels/controls.py); no value from outside may leave them
RANGES = {"lr": (1e-4, 10.0), "momentum": (0.0, 0.99), "weight_decay": (0.0, 0.1), "lr_multiplier": (0.0, 4.0)}
NUMBER_CLASSES = ("bpmagic-lr", "bpmagic-momentum", "bpmagic-weight-decay", "bpmagic-multiplier")
BUTTONS = ("bpmagic-pause", "bpmagic-step", "bpmagic-stop")
BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, -1.0, -1e-9, 0.0, -0.0, 5e-324, 1e6,
               10 ** 400, -(10 ** 400), 2 ** 63, "0.1", "abc", "", "nan", "inf", "1e308", [0.1], [], {"value": 0.1},
               {}, None, True, False]
OWNED_TRAITS = {"min": [-1e308, 0.0, float("nan"), "x", None], "max": [1e308, float("inf"), 100.0, [1]],
                "version": [-1, 10 ** 12, 10 ** 400, "v", None, 1.5], "base": [10 ** 12, -5, "b", None, [1], 1.5],
                "log": ["yes", None, 3], "disabled": [True, "no", None], "description": [5, None, ["x"]],
                "error": [7, None], "_dom_classes": [["bpmagic-lr"], "x"], "_esm": ["alert(1)", 5],
                "layout": ["IPY_MODEL_nonexistent", 5, None]}
RUN_CODE = ("import json, math\nh = _bp.controls.optimizer.hyperparameters()\n"
            "print(json.dumps({'hyper': h, 'steps': _bp.steps_done, 'status': _bp.status}))")


class Fuzzer:
    def __init__(self, k, seed, subshell_id=None):
        self.k, self.rng, self.sid = k, np.random.default_rng(seed), subshell_id
        self.counts = collections.Counter()

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def send(self, category, msg_type, content, buffers=None, raw_json=False):
        """`raw_json`: content packed with NaN / Infinity tokens, which the stock packer refuses."""
        s = self.k.kc.session
        msg = s.msg(msg_type, content if not raw_json else {})
        if raw_json:
            msg["content"] = json.dumps(content, allow_nan=True).encode()
        if self.sid:
            msg["header"]["subshell_id"] = self.sid
        s.send(self.k.kc.shell_channel.socket, msg, buffers=buffers)
        self.counts[category] += 1
        self.last_id = msg["header"]["msg_id"]
        return self.last_id

    def comm_msg(self, category, comm_id, data, buffers=None, raw_json=False):
        return self.send(category, "comm_msg", {"comm_id": comm_id, "data": data}, buffers, raw_json)

    def comm_of(self, cls):
        return self.k.comms[cls]

    def update(self, category, cls, state, buffer_paths=(), buffers=None):
        data = {"method": "update", "state": state, "buffer_paths": [list(p) for p in buffer_paths]}
        nonfinite = any(isinstance(v, float) and not math.isfinite(v) for v in state.values())
        return self.comm_msg(category, self.comm_of(cls), data, buffers, raw_json=nonfinite)

    # -- the generators ---------------------------------------------------------------------------------------------
    def bad_values(self, n):
        for _ in range(n):
            cls, value = self.pick(NUMBER_CLASSES), self.pick(BAD_NUMBERS)
            state = {"value": value}
            if self.rng.random() < 0.5:
                state["base"] = 10 ** 9  # as if the browser had seen every value: only the value's check decides
            self.update("bad value", cls, state)

    def owned_traits(self, n):
        for _ in range(n):
            cls = self.pick(NUMBER_CLASSES)
            trait = self.pick(list(OWNED_TRAITS))
            state = {trait: self.pick(OWNED_TRAITS[trait])}
            if self.rng.random() < 0.5:  # widen the range, then try a value outside the real one
                state.update({"max": 1e308, "min": -1e308, "value": self.pick([1e300, -5.0, 50.0, 0.995])})
            self.update("kernel-owned trait", cls, state)

    def unknown_keys(self, n):
        for _ in range(n):
            cls = self.pick(NUMBER_CLASSES + BUTTONS)
            key = self.pick(["nonexistent", "__class__", "_model_name", "comm", "keys", "", "value\x00", "💥"])
            self.update("unknown key", cls, {key: self.pick(BAD_NUMBERS)})

    def buffers(self, n):
        for _ in range(n):
            cls = self.pick(NUMBER_CLASSES)
            kind = int(self.rng.integers(4))
            if kind == 0:  # the value as a binary buffer
                self.update("buffers", cls, {}, [["value"]], [np.float64(0.05).tobytes()])
            elif kind == 1:  # a buffer path with no buffer
                self.update("buffers", cls, {"value": 0.05}, [["value"], ["max"]], [])
            elif kind == 2:  # buffers with no paths, and a path into nothing
                self.update("buffers", cls, {}, [["nope", 3, "deep"]], [b"\x00" * 3, b"\xff" * 9])
            else:  # paths that are not lists
                data = {"method": "update", "state": {}, "buffer_paths": self.pick(["value", 5, None, [5]])}
                self.comm_msg("buffers", self.comm_of(cls), data, [b"\x01"])

    def methods(self, n):
        for _ in range(n):
            cls = self.pick(NUMBER_CLASSES + BUTTONS + ("bpmagic-controls-message",))
            data = self.pick([{"method": "request_state"}, {"method": "nonexistent"}, {"method": None},
                              {"method": 5}, {"state": {"value": 0.05}}, {},
                              {"method": "custom", "content": {"event": "nonexistent"}},
                              {"method": "custom", "content": None}, {"method": "custom"},
                              {"method": "custom", "content": {"event": "click", "extra": [1, 2]}},
                              {"method": "update"}, {"method": "update", "state": None},
                              {"method": "update", "state": [1, 2]}, {"method": "update", "state": "value"},
                              {"method": "echo_update", "state": {"value": 3.0}}])
            if cls not in self.k.comms or (cls == "bpmagic-stop" and "click" in json.dumps(data)):
                cls = "bpmagic-lr"  # a real Stop click would end the run: those come at the end
            self.comm_msg("method", self.comm_of(cls), data)
        for _ in range(n // 4):  # data that is not a dict at all
            self.comm_msg("method", self.comm_of(self.pick(NUMBER_CLASSES)), self.pick([None, 5, "update", [1]]))

    def unknown_comms(self, n):
        for _ in range(n):
            kind = int(self.rng.integers(4))
            cid = uuid.uuid4().hex
            if kind == 0:
                self.comm_msg("unknown comm", cid, {"method": "update", "state": {"value": 0.05}, "buffer_paths": []})
            elif kind == 1:
                self.send("unknown comm", "comm_close", {"comm_id": cid, "data": {}})
            elif kind == 2:
                self.send("comm_open", "comm_open", {"comm_id": cid, "target_name": self.pick(
                    ["nonexistent", "", "jupyter.widget.control", "jupyter.widget.version"]), "data": {}})
            else:  # a widget the browser made up, with a model no one has
                self.send("comm_open", "comm_open", {"comm_id": cid, "target_name": "jupyter.widget", "data": {
                    "state": {"_model_name": self.pick(["NoSuchModel", "FloatSliderModel", None]),
                              "_model_module": "@jupyter-widgets/controls", "value": float("nan")},
                    "buffer_paths": []}}, raw_json=True)

    def clicks(self, n):
        """A flood of Pause and Step clicks (an even number of Pauses, so training ends up running)."""
        pauses = 0
        for _ in range(n):
            cls = self.pick(("bpmagic-pause", "bpmagic-step", "bpmagic-step"))
            pauses += cls == "bpmagic-pause"
            self.comm_msg("click", self.comm_of(cls), {"method": "custom", "content": {"event": "click"}})
        if pauses % 2:
            self.comm_msg("click", self.comm_of("bpmagic-pause"), {"method": "custom", "content": {"event": "click"}})

    def good_values(self, n):
        """Values inside the ranges: these must land. Returns the last one sent per control."""
        last = {}
        for _ in range(n):
            cls = self.pick(NUMBER_CLASSES)
            lo, hi = {"bpmagic-lr": (1e-3, 0.3), "bpmagic-momentum": (0.0, 0.9),
                      "bpmagic-weight-decay": (0.0, 0.01), "bpmagic-multiplier": (0.5, 2.0)}[cls]
            value = float(self.rng.uniform(lo, hi))
            self.update("good value", cls, {"value": value})
            last[cls] = value
        return last


def read_run(k, sid):
    """The run's hyperparameters and step count, read by code on a subshell while the cell trains."""
    msg = k.kc.session.msg("execute_request", {"code": RUN_CODE, "silent": False, "store_history": False,
                                               "user_expressions": {}, "allow_stdin": False})
    msg["header"]["subshell_id"] = sid
    k.kc.shell_channel.send(msg)
    k.wait_reply(msg["header"]["msg_id"], timeout=120)
    k.wait_handled(msg["header"]["msg_id"], timeout=120)  # its output comes before its idle status
    out = "".join(m["content"].get("text", "") for _, m in k.iopub
                  if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] and m["msg_type"] == "stream")
    return json.loads(out.strip().splitlines()[-1])


def in_range(name, value):
    lo, hi = RANGES[name]
    return isinstance(value, float) and math.isfinite(value) and lo <= value <= hi


def assert_hyper_in_range(hyper, where):
    for name in ("lr", "momentum", "weight_decay"):
        assert in_range(name, hyper[name]), f"{where}: {name} = {hyper[name]!r}"
    for layer, m in hyper["lr_multipliers"].items():
        assert in_range("lr_multiplier", m), f"{where}: multiplier of {layer} = {m!r}"


def wait_for_steps(k, sid, more, timeout=60):
    start = read_run(k, sid)["steps"]
    deadline = time.monotonic() + timeout
    while (now := read_run(k, sid))["steps"] < start + more:
        assert time.monotonic() < deadline, f"training did not go on: {now}"
        k.drain(0.1)
    return now


def fuzz(k, sid_messages, sid_reads, seed):
    f = Fuzzer(k, seed, sid_messages)
    msg_id = k.kc.execute(f"%%backprop {OPTIONS}\n{CELL}")
    deadline = time.monotonic() + 180
    while not all(c in k.comms for c in NUMBER_CLASSES + BUTTONS):
        assert time.monotonic() < deadline, f"the dashboard never appeared: {sorted(k.comms)}"
        k.drain(0.05)
    wait_for_steps(k, sid_reads, 20)
    readings = []
    t0 = time.time()
    for round_ in range(2):
        f.bad_values(80)
        f.owned_traits(40)
        f.unknown_keys(20)
        f.buffers(20)
        f.methods(30)
        f.unknown_comms(20)
        f.clicks(40)
        last_good = f.good_values(10)
        k.wait_handled(f.last_id, timeout=120)  # comms and the reads below run on different threads
        readings.append(wait_for_steps(k, sid_reads, 20))
        assert_hyper_in_range(readings[-1]["hyper"], f"after round {round_}")
    # the last good value sent for each control is the one in use (nothing later overrode it)
    hyper = readings[-1]["hyper"]
    names = {"bpmagic-lr": "lr", "bpmagic-momentum": "momentum", "bpmagic-weight-decay": "weight_decay"}
    for cls, value in last_good.items():
        if cls in names:
            assert hyper[names[cls]] == pytest.approx(value), (cls, hyper)
    # comm_close of live comms: a multiplier and the loss chart; then messages to them (now unknown ids)
    closed = [c for c in ("bpmagic-multiplier",) if c in k.comms]
    for cls in closed:
        f.send("comm_close live", "comm_close", {"comm_id": k.comms[cls], "data": {}})
        f.update("after close", cls, {"value": 0.5})
    closed_at = time.time()
    f.clicks(30)
    k.wait_handled(f.last_id, timeout=120)
    readings.append(wait_for_steps(k, sid_reads, 20))
    assert readings[-1]["status"] == "running", readings[-1]
    k.drain(0.5)
    published = [m for t, m in k.iopub if t > closed_at + 0.2 and m["msg_type"] == "comm_msg"
                 and m["content"]["data"].get("method") == "update"]
    assert published, "the dashboard stopped publishing after a comm was closed"
    # Step clicks while running banked no steps: once paused, training stays put
    k.wait_handled(f.comm_msg("click", f.comm_of("bpmagic-pause"), {"method": "custom", "content": {"event": "click"}}))
    deadline = time.monotonic() + 60
    while read_run(k, sid_reads)["status"] != "paused":
        assert time.monotonic() < deadline, "Pause did not pause"
    paused_at = read_run(k, sid_reads)["steps"]
    while (now := read_run(k, sid_reads)["steps"]) != paused_at:  # the step running when Pause came may still end
        paused_at = now
    k.drain(0.5)
    assert read_run(k, sid_reads)["steps"] == paused_at, "steps ran while paused (banked Step clicks?)"
    f.comm_msg("click", f.comm_of("bpmagic-pause"), {"method": "custom", "content": {"event": "click"}})
    readings.append(wait_for_steps(k, sid_reads, 20))
    for _ in range(50):  # a flood of Stop clicks ends the cell once
        f.comm_msg("stop flood", f.comm_of("bpmagic-stop"), {"method": "custom", "content": {"event": "click"}})
    reply = k.wait_reply(msg_id, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    print(f"\ncomm fuzz: messages sent and handled in {time.time() - t0:.1f} s")
    return f.counts, readings


def check_after(k, counts, readings):
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
    total = sum(counts.values())
    print(f"\ncomm fuzz: {total} messages: {summary}")
    info = k.kc.kernel_info(reply=True, timeout=60)
    assert info["content"]["status"] == "ok"
    assert k.run("print(6 * 7)").strip() == "42"
    out = k.run(
        "import json, math, numpy as np\n"
        "h = _bp.history\n"
        "cols = {c: h[c] for c in h if c in ('lr', 'momentum', 'weight_decay') or c.startswith('lr_multiplier/')}\n"
        "params = {n: np.asarray(v) for n, v in _bp.params.items()}\n"
        "print(json.dumps({'cols': cols, 'loss': h['loss'][-5:], 'steps': _bp.steps_done,\n"
        "  'last': _bp.step.last.step, 'status': _bp.status, 'why': _bp.ended_because,\n"
        "  'hyper': _bp.controls.optimizer.hyperparameters(),\n"
        "  'params_finite': all(bool(np.isfinite(p).all()) for p in params.values()),\n"
        "  'same_as_ns': all(np.array_equal(params[n], globals()[n]) for n in params)}))")
    r = json.loads(out.strip().splitlines()[-1])
    where = f"(after {total} fuzz messages: {summary})"
    assert r["status"] == "stopped" and r["why"] == "stopped", (r["status"], r["why"], where)
    assert_hyper_in_range(r["hyper"], f"at the end {where}")
    for col, values in r["cols"].items():
        name = "lr_multiplier" if col.startswith("lr_multiplier/") else col
        bad = [v for v in values if not in_range(name, v)]
        assert not bad, f"history {col} left its range: {bad[:5]} {where}"
    assert r["steps"] == r["last"] > readings[-1]["steps"], (r["steps"], r["last"], where)
    assert all(math.isfinite(v) for v in r["loss"]) and r["params_finite"] and r["same_as_ns"], (r, where)
    assert r["loss"][-1] < 0.6, f"training did not learn: loss {r['loss'][-1]} {where}"


def test_fuzz_backprop_kernel_plain_messages():
    k = Kernel("backprop")
    try:
        k.run(SETUP)
        sid = k.create_subshell()  # only to read the run while the cell blocks; the fuzz goes plain
        counts, readings = fuzz(k, None, sid, seed=11)
        check_after(k, counts, readings)
    finally:
        k.close()


def test_fuzz_stock_kernel_subshell_messages():
    k = Kernel("python3")
    try:
        k.run("%load_ext bpmagic\n" + SETUP)
        sid = k.create_subshell()  # as JupyterLab >= 4.4 sends comms
        counts, readings = fuzz(k, sid, sid, seed=12)
        check_after(k, counts, readings)
    finally:
        k.close()


def test_controls_offer_is_the_one_check():
    """Controls.offer, where every value from outside enters: only a real number inside the offered range lands."""
    from bpmagic.train import optim
    from bpmagic.train.controls import Controls

    c = Controls(optim.SGD(lr=0.1, momentum=0.5))
    c.offer_range("lr", 1e-4, 10.0)
    c.offer_range("lr_multiplier/1", 0.0, 4.0)
    for bad in BAD_NUMBERS + [20.0, 5e-5]:
        if isinstance(bad, (int, float)) and not isinstance(bad, bool) and 1e-4 <= bad <= 10.0:
            continue
        with pytest.raises(ValueError):
            c.offer("lr", bad)
    with pytest.raises(ValueError):
        c.offer("momentum", 0.5)  # offered nowhere
    assert c.optimizer.lr == 0.1
    with pytest.raises(ValueError):
        c.optimizer.lr = 10 ** 400  # from code: a ValueError too, not an OverflowError
    assert c.offer("lr", 1) == 1.0 and c.optimizer.lr == 1.0
    assert c.offer("lr_multiplier/1", 4.0) == 4.0 and c.optimizer.lr_multipliers == {"1": 4.0}
    for _ in range(5):
        c.step_once()  # while running: banks nothing
    c.pause()
    assert c._steps_allowed == 0
    c.step_once()
    assert c.next_action() == 0 and c._steps_allowed == 0  # the Step granted: one step now, none banked

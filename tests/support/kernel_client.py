"""A real kernel driven through jupyter_client, with the dashboard's comms found as a browser finds them.

Used by the live-controls tests, tests/support/live_controls_probe.py and bench/controls.py. Messages are built exactly as a browser's widget manager
sends them (``comm_msg`` with ``method: update``/``custom``), optionally tagged with a subshell id as JupyterLab >= 4.4
does.
"""
import json
import re
import time

from jupyter_client.manager import start_new_kernel


class Kernel:
    """A kernel plus the dashboard's comm ids, found in the comm_open messages it publishes."""

    def __init__(self, name):
        self.km, self.kc = start_new_kernel(kernel_name=name, startup_timeout=180)  # a busy machine starts slowly
        self.comms = {}  # css class -> comm id
        self.iopub = []

    def drain(self, timeout=0.05):
        """Read what IOPub delivers in the next `timeout` seconds. Bounded by the clock, not by a quiet moment:
        a training dashboard publishes without pause, so "until nothing arrives" could wait for ever."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                msg = self.kc.get_iopub_msg(timeout=left)
            except Exception:
                return
            self.iopub.append((time.time(), msg))
            if msg["msg_type"] in ("comm_open", "comm_msg"):  # classes come with the state or a later update
                state = msg["content"].get("data", {}).get("state", {})
                for cls in state.get("_dom_classes", []):
                    self.comms.setdefault(cls, msg["content"]["comm_id"])

    def run(self, code, timeout=180):
        """Execute and wait; returns stdout."""
        msg_id = self.kc.execute(code)
        reply = self.wait_reply(msg_id, timeout)
        assert reply["content"]["status"] == "ok", reply["content"]
        self.wait_handled(msg_id, timeout)  # its output is published before its idle status
        return "".join(m["content"].get("text", "") for _, m in self.iopub
                       if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream")

    def wait_reply(self, msg_id, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain(0.01)
            try:
                reply = self.kc.get_shell_msg(timeout=0.05)
            except Exception:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
        raise TimeoutError(msg_id)

    def send_comm(self, css_class, data, subshell_id=None):
        content = {"comm_id": self.comms[css_class], "data": data}
        msg = self.kc.session.msg("comm_msg", content)
        if subshell_id:
            msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def wait_handled(self, msg_id, timeout=180):
        """Until the kernel reports idle after handling message `msg_id`."""
        end, checked = time.monotonic() + timeout, 0
        while True:
            for _, m in self.iopub[checked:]:
                if (m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                        and m["parent_header"].get("msg_id") == msg_id):
                    return
            checked = len(self.iopub)
            assert time.monotonic() < end, "the kernel did not handle the message in time"
            self.drain(0.05)

    def wait_until(self, condition, timeout=180, why="the kernel did not report it in time"):
        """Read IOPub until `condition()` holds (it looks at what the kernel has published), deadline `timeout` s."""
        end = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < end, why
            self.drain(0.05)

    def updates_since(self, after: int) -> int:
        """Dashboard updates published since IOPub message `after` (the run publishes them while it trains)."""
        return sum(1 for _, m in self.iopub[after:] if m["msg_type"] == "comm_msg")

    def supports_subshells(self, timeout=180) -> bool:
        reply = self.wait_reply(self.kc.kernel_info(), timeout)
        return "kernel subshells" in reply["content"].get("supported_features", [])

    def status(self):
        """The newest status line the dashboard's loss view published ("training · step N/M ...", "paused at step
        N of M", ...), or "" before any."""
        for _, m in reversed(self.iopub):
            if m["msg_type"] in ("comm_open", "comm_msg"):
                status = m["content"].get("data", {}).get("state", {}).get("status")
                if isinstance(status, str) and status:
                    return status
        return ""

    def step(self):
        """The step count the dashboard last reported (-1 before any)."""
        found = re.search(r"step (\d+)", self.status())
        return int(found.group(1)) if found else -1

    def wait_steps(self, n, timeout=180):
        """Until the dashboard reports at least `n` more steps than it has so far: training went on."""
        target = max(self.step(), 0) + n
        self.wait_until(lambda: self.step() >= target, timeout, f"training did not reach step {target}")
        return self.step()

    def set_value(self, css_class, value, subshell_id=None):
        return self.send_comm(css_class, {"method": "update", "state": {"value": value}, "buffer_paths": []}, subshell_id)

    def click(self, css_class, subshell_id=None):
        self.send_comm(css_class, {"method": "custom", "content": {"event": "click"}}, subshell_id)

    def create_subshell(self):
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        while True:
            reply = self.kc.control_channel.get_msg(timeout=180)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply["content"]["subshell_id"]

    def history(self, *columns):
        out = self.run("import json\nprint(json.dumps({c: _bp.history[c] for c in %r} | "
                       "{'status': _bp.status, 'why': _bp.ended_because}))" % (columns,))
        return json.loads(out.strip().splitlines()[-1])

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


# A small %%backprop model that trains fast, shared by the kernel tests that steer a running cell
SETUP = ("import numpy as np\nrng = np.random.default_rng(0)\nX = rng.standard_normal((256, 8)).astype(np.float32)\n"
         "Y = (X[:, 0] > 0).astype(int)")
CELL = """\
W1: Param = randn(8, 16) * 0.3
b1: Param = zeros(16)
W2: Param = randn(16, 2) * 0.3
b2: Param = zeros(2)
x: Input = X
y: Target = Y
loss: Loss = cross_entropy(tanh(x @ W1 + b1) @ W2 + b2, y)
"""

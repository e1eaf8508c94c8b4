#!/usr/bin/env python3
"""A class of N students on a real JupyterHub at once: how long lab 05 takes them all, and how much memory each
student holds afterwards — so how many students a 16 GB or a 64 GB machine serves.

    python bench/classroom.py                      # N = 5, 10, 20 (a few minutes on 2 CPU cores)
    python bench/classroom.py --quick              # a smoke run: N = 2
    python bench/classroom.py --students 10 --json bench/results/classroom.json

For each N, a fresh hub (tests/support/hub.py: configurable-http-proxy, DummyAuthenticator, one local jupyterhub-singleuser
per student). All N students at once, as asyncio tasks, through the hub's REST API and proxy only:
create the user, start their server, wait until it is ready, start a `backprop` kernel in it (lab 05's kernelspec)
and, over the kernel's websocket, run lab 05's code cells in order, each waiting for its execute_reply.

Each student's kernel first runs a prelude of their own (their name), and last the lab's own outcome check
(tests/classroom/test_examples.py) plus identity checks, so users mixed up anywhere on the way would be caught: the kernel
runs as that student (JUPYTERHUB_USER), in that student's home, under that student's server, with that student's
prelude; the run left training ('play') takes a learning rate only that student was sent and its history reports
it; a file the kernel writes lands in that student's home; every cell sent has its reply. A student fails on any
of these, on a cell's error, or on the lab's facts (live stopped after lr 0.1 and 2.0, play training). The lab's
whole check also asks that lr 2.0 blew the loss up (its peak, averaged over 20 steps: 37-61 against a calm 0.08 in
ten runs here) and lr 0.1 brought it back down; a miss there is counted and shown, not failed.

Memory is read after every student has finished, from /proc/<pid>/smaps_rollup: PSS (shared pages split between
the processes sharing them: what one more student costs) and RSS, for each student's kernel and single-user server
(a hub pays for both), with the kernel's peak RSS. Students that fit = (machine - hub and proxy PSS - 1 GiB for the
OS) / mean student PSS, rounded down; 16 GB and 64 GB are taken as GiB.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
from hub import Hub  # noqa: E402  (the hub the browser tests run on)
from lab_checks import CHECKS  # noqa: E402  (lab 05's own outcome check)

LAB = ROOT / "examples" / "05_learning_rate_live.ipynb"
KERNEL = nbformat.read(LAB, as_version=4).metadata["kernelspec"]["name"]
GIB = 1024 ** 3
OS_RESERVE = 1 * GIB
MACHINES_GIB = (16, 64)
CELL_TIMEOUT = 600  # one cell on a 2-core machine shared by 20 students
EXPRESSION, LAB_CHECK = CHECKS[LAB.stem]


def mark_of(k):
    return round(0.05 + 0.001 * k, 6)  # play's learning rate that only student k is sent


def prelude(name, k):
    return f"STUDENT = {name!r}"


def check_cell(k):
    """The lab's check, the student's identity, and the mark through play's history; then play stops, so a
    student who is done no longer takes CPU from those still working."""
    return f"""\
import json as _json, os as _os
_result = {{'lab': {EXPRESSION}}}
_result.update(student=STUDENT, user=_os.environ.get('JUPYTERHUB_USER'), cwd=_os.getcwd(), pid=_os.getpid(),
               server_pid=_os.getppid())
play.optimizer.lr = {mark_of(k)!r}
play.wait(until_step=play.steps_done + 20)
_result['play_lr'] = float(play.history['lr'][-1])
play.stop().wait()
with open('whoami.txt', 'w') as _f:
    _f.write(STUDENT)
print('CHECK', _json.dumps(_result))
"""


def memory(pid):
    """PSS, RSS and USS (private pages) from smaps_rollup, and the peak RSS, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) * 1024
    peak = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return {"pss": fields["Pss"], "rss": fields["Rss"],
            "uss": fields["Private_Clean"] + fields["Private_Dirty"], "rss_peak": peak}


class Student:
    def __init__(self, hub, http, name, k, cells):
        self.hub, self.http, self.name, self.k = hub, http, name, k
        self.cells = [prelude(name, k), *cells, check_cell(k)]
        self.server = f"{hub.url}/user/{name}"
        self.auth = {"Authorization": f"token {hub.token}"}
        self.times, self.errors, self.result, self.kernel_id = {}, [], None, None
        self.replies = 0

    async def request(self, method, url, body=None, timeout=120):
        reply = await self.http.fetch(HTTPRequest(url, method=method, headers=self.auth, request_timeout=timeout,
                                                  connect_timeout=timeout,
                                                  body=json.dumps(body) if body is not None else
                                                  ("" if method == "POST" else None)),
                                      raise_error=True)
        return json.loads(reply.body) if reply.body else None

    async def hub_api(self, method, path, body=None):
        return await self.request(method, f"{self.hub.url}/hub/api{path}", body)

    async def run(self):
        t0 = time.monotonic()
        phase = "spawning the server"
        try:
            await self.hub_api("POST", f"/users/{self.name}")
            await self.hub_api("POST", f"/users/{self.name}/server")
            while not (await self.hub_api("GET", f"/users/{self.name}"))["servers"].get("", {}).get("ready"):
                await asyncio.sleep(0.5)
            self.times["spawn_s"] = time.monotonic() - t0
            t1 = time.monotonic()
            phase = "starting the kernel"
            kernel = await self.request("POST", f"{self.server}/api/kernels", {"name": KERNEL})
            self.kernel_id = kernel["id"]
            ws_url = f"{self.server.replace('http', 'ws', 1)}/api/kernels/{self.kernel_id}/channels"
            # the server answers once the kernel replies to kernel_info: ten kernels starting on two cores take a while
            ws = await websocket_connect(HTTPRequest(ws_url, headers=self.auth, connect_timeout=300,
                                                     request_timeout=300), max_message_size=64 * 2 ** 20)
            self.times["kernel_s"] = time.monotonic() - t1
            phase = "running the lab"
            try:
                stdout = ""
                for i, code in enumerate(self.cells):
                    stdout = await self.execute(ws, code, i)
                    if self.errors:
                        break
            finally:
                ws.close()
            self.times["lab_s"] = time.monotonic() - t1
            if not self.errors:
                line = next((s for s in stdout.splitlines() if s.startswith("CHECK ")), None)
                if line is None:
                    self.errors.append(f"the check printed no CHECK line: {stdout[-500:]!r}")
                else:
                    self.result = json.loads(line[len("CHECK "):])
        except Exception as e:  # a student who could not get through is a failed outcome, reported, not a crash
            self.errors.append(f"{phase}: {type(e).__name__}: {e}")
        self.times["total_s"] = time.monotonic() - t0

    async def execute(self, ws, code, i):
        """Run one cell; returns its stdout. An error reply or output is recorded in self.errors."""
        msg_id = uuid.uuid4().hex
        await ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.name,
                       "session": self.kernel_id, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        stdout, reply, idle = "", None, False
        deadline = time.monotonic() + CELL_TIMEOUT
        while reply is None or not idle:  # the reply, and iopub's idle: all the cell's output has come
            raw = await asyncio.wait_for(ws.read_message(), max(1.0, deadline - time.monotonic()))
            if raw is None:
                raise ConnectionError(f"the kernel's websocket closed during cell {i}")
            msg = json.loads(raw if isinstance(raw, str) else unpack(raw))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # the dashboards' comm messages from runs training in the background
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout += content["text"]
            elif kind == "error":
                self.errors.append(f"cell {i}: {content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                reply = content
                self.replies += 1
                if content["status"] != "ok" and not self.errors:
                    self.errors.append(f"cell {i}: {content['status']}: {content.get('evalue', '')}")
        return stdout

    def check(self):
        """Failures of this student's outcome: errors, the lab's facts and the identity checks (see the docstring)."""
        if self.errors:
            return self.errors
        r, home = self.result, self.hub.home(self.name)
        failures = []
        lab = r["lab"]
        if (lab["status"], lab["rates"], lab["play"]) != ("stopped", [0.1, 2.0], "running"):
            failures.append(f"lab 05's runs are not as the lab leaves them: {lab}")
        for key, want in (("student", self.name), ("user", self.name), ("cwd", str(home))):
            if r[key] != want:
                failures.append(f"{key} is {r[key]!r}, not {want!r}")
        if not math.isclose(r["play_lr"], mark_of(self.k), rel_tol=1e-6):
            failures.append(f"play's learning rate is {r['play_lr']}, not this student's {mark_of(self.k)}")
        whoami = home / "whoami.txt"
        if not whoami.exists() or whoami.read_text() != self.name:
            failures.append(f"{whoami} does not hold {self.name!r}")
        if self.replies != len(self.cells):
            failures.append(f"{self.replies} execute replies for {len(self.cells)} cells")
        server = psutil.Process(r["server_pid"])
        if server.environ().get("JUPYTERHUB_USER") != self.name:
            failures.append(f"the kernel's parent {r['server_pid']} is not {self.name}'s server")
        if self.hub.process.pid not in {p.pid for p in server.parents()}:
            failures.append(f"the kernel's parent {r['server_pid']} was not started by the hub")
        return failures


def unpack(raw: bytes) -> bytes:
    """The JSON part of jupyter_server's binary websocket frame (a message with buffers): u32 count, offsets."""
    count = int.from_bytes(raw[:4], "big")
    offsets = [int.from_bytes(raw[4 + 4 * j: 8 + 4 * j], "big") for j in range(count)]
    return raw[offsets[0]:offsets[1] if count > 1 else None]


def lab_cells():
    """Lab 05's code cells."""
    return [c.source for c in nbformat.read(LAB, as_version=4).cells if c.cell_type == "code"]


def summary(values):
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values),
            "min": min(values)}


async def classroom(hub, n, cells):
    AsyncHTTPClient.configure(None, max_clients=4 * n + 8)
    http = AsyncHTTPClient()
    students = [Student(hub, http, f"s{k:02d}", k, cells) for k in range(1, n + 1)]
    t0 = time.monotonic()
    await asyncio.gather(*(s.run() for s in students))
    wall = time.monotonic() - t0
    # memory once everyone is done (before anything stops), per student: their kernel and their server
    rows = []
    for s in students:
        row = {"name": s.name, "times": s.times, "result": s.result}
        if s.result:
            row["kernel"], row["server"] = memory(s.result["pid"]), memory(s.result["server_pid"])
            row["pids"] = [s.result["pid"], s.result["server_pid"]]
        rows.append(row)
    overhead = memory(hub.process.pid)["pss"] + memory(int((hub.root / "proxy.pid").read_text()))["pss"]
    for s, row in zip(students, rows):
        row["failures"] = s.check()
        row["passed"] = not row["failures"]
        row["lab_check"] = bool(s.result and LAB_CHECK(s.result["lab"]))
    # every process the hub started (servers, kernels, proxy), to see that all of them end
    started = psutil.Process(hub.process.pid).children(recursive=True)
    # stop the servers through the API; the hub then stops with none left
    for s in students:
        try:
            await s.hub_api("DELETE", f"/users/{s.name}/server")
        except Exception as e:  # the hub's own stop still ends the server
            print(f"  {s.name}: stopping the server through the API failed: {e}", flush=True)
    http.close()
    return wall, rows, overhead, started


def measure(n, root, cells):
    with Hub(root / f"hub-{n}") as hub:
        wall, rows, overhead, started = asyncio.run(classroom(hub, n, cells))
    _, alive = psutil.wait_procs(started, timeout=30)
    left = [f"{p.pid} {' '.join(p.cmdline())[:160]}" for p in alive]
    for p in alive:  # never leave a student's process behind; say so, it is a failure
        p.kill()
    done = [r for r in rows if "kernel" in r]
    per = {part: {key: summary([r[part][key] for r in done]) for key in ("pss", "rss", "uss", "rss_peak")}
           for part in ("kernel", "server")} if done else {}
    student_pss = statistics.fmean(r["kernel"]["pss"] + r["server"]["pss"] for r in done) if done else None
    fit = {f"{g}GB": math.floor((g * GIB - overhead - OS_RESERVE) / student_pss) if student_pss else None
           for g in MACHINES_GIB}
    return {"students": n, "wall_s": wall, "passed": sum(r["passed"] for r in rows),
            "lab_check_passed": sum(r["lab_check"] for r in rows),
            "per_student_s": {k: summary([r["times"][k] for r in rows if k in r["times"]])
                              for k in ("spawn_s", "kernel_s", "lab_s", "total_s")
                              if any(k in r["times"] for r in rows)},
            "memory": per, "student_pss": student_pss, "hub_and_proxy_pss": overhead, "fit": fit,
            "left_running": left, "rows": rows}


def mib(x):
    return f"{x / 2 ** 20:.0f}"


def table(results):
    def pair(m, part):
        return f"{mib(m[part]['pss']['mean'])}/{mib(m[part]['rss']['mean'])}" if m else "-"

    def times(r, key):
        t = r["per_student_s"].get(key)
        return f"{t['median']:.1f}/{t['max']:.1f}" if t else "-"

    head = (f"{'N':>3} {'passed':>6} {'lab chk':>7} {'wall s':>7} {'spawn s':>11} {'lab s':>11} "
            f"{'kernel PSS/RSS MiB':>19} "
            f"{'server PSS/RSS MiB':>19} {'student PSS':>11} {'fit 16GB':>8} {'fit 64GB':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['students']:>3} {r['passed']:>3}/{r['students']:<2} {r['lab_check_passed']:>4}/{r['students']:<2} "
            f"{r['wall_s']:>7.1f} {times(r, 'spawn_s'):>11} {times(r, 'lab_s'):>11} "
            f"{pair(r['memory'], 'kernel'):>19} {pair(r['memory'], 'server'):>19} "
            f"{mib(r['student_pss']) if r['student_pss'] else '-':>11} "
            f"{str(r['fit']['16GB']):>8} {str(r['fit']['64GB']):>8}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", default="5,10,20", help="class sizes, comma-separated (default 5,10,20)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one class of 2")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    cells = lab_cells()
    sizes = [2] if args.quick else [int(s) for s in args.students.split(",")]
    print(f"lab {LAB.name} on the {KERNEL!r} "
          f"kernel; {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / GIB:.1f} GiB; classes of {sizes}", flush=True)
    results = []
    root = Path(tempfile.mkdtemp(prefix="classroom-"))
    for n in sizes:
        r = measure(n, root, cells)
        results.append(r)
        for row in r["rows"]:
            if row["failures"]:
                print(f"  N={n} {row['name']} FAILED: {'; '.join(row['failures'])}", flush=True)
            elif not row["lab_check"]:
                print(f"  N={n} {row['name']}: lab 05's divergence check missed: {row['result']['lab']}",
                      flush=True)
        for line in r["left_running"]:
            print(f"  N={n} LEFT RUNNING (killed now): {line}", flush=True)
        print(f"N={n}: {r['passed']}/{n} passed, lab check {r['lab_check_passed']}/{n}, in {r['wall_s']:.1f} s",
              flush=True)
    failed = any(r["passed"] < r["students"] or r["left_running"] for r in results)
    if failed:  # the hubs' logs (with the students' servers') say why
        print(f"\nthe hubs' folders, logs and students' homes are kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(results))
    print("\nwall: all N students from creation to checked; spawn s: server start, lab s: kernel start and the lab,\n"
          "per student (median/max); memory: means after the lab; student PSS = kernel + server PSS;\n"
          f"fit = (machine - hub and proxy PSS - {OS_RESERVE // GIB} GiB for the OS) / student PSS, machines in GiB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "lab": LAB.name, "kernel": KERNEL, "cpus": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total, "os_reserve_bytes": OS_RESERVE, "results": results,
            "ok": not failed}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

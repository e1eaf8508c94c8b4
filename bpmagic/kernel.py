"""The backprop kernel: IPython with bpmagic loaded, whose dashboard controls stay live during a %%backprop cell,
whatever the frontend: on ipykernel 7 its comms are routed to a private subshell from the start, for plain and
subshell-tagged messages alike; on ipykernel 6 the waiting cell handles them (jupyter-ui-poll). See live_comms.

    python -m bpmagic.kernel install [--user | --sys-prefix]   # install the kernelspec by hand
    python -m bpmagic.kernel -f CONNECTION_FILE                 # what Jupyter runs (see kernels/backprop)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ipykernel.ipkernel import IPythonKernel

from . import __version__, live_comms

KERNEL_NAME = "backprop"


class BackpropKernel(IPythonKernel):
    implementation = "bpmagic"
    implementation_version = __version__
    banner = f"Python 3 (backprop): IPython with bpmagic {__version__}. Try %%backprop?"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shell.extension_manager.load_extension("bpmagic")

    def start(self):
        super().start()  # registers ipykernel's shell-stream callback: the subshell router wraps it, so it comes after
        live_comms.enable(self)


def kernelspec_dir() -> Path:
    """The folder holding kernel.json: in the wheel's shared data, or the repo's kernels/ in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "kernels" / KERNEL_NAME,
                      Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME):
        if (candidate / "kernel.json").exists():
            return candidate
    raise FileNotFoundError("bpmagic's kernelspec (kernels/backprop/kernel.json) is missing from the installation")


def install(user=False, prefix=None) -> str:
    """Install the kernelspec; returns where it went."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().install_kernel_spec(str(kernelspec_dir()), KERNEL_NAME, user=user, prefix=prefix)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["install"]:
        parser = argparse.ArgumentParser(prog="python -m bpmagic.kernel install",
                                         description="Install the 'Python 3 (backprop)' kernelspec.")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--user", action="store_true", help="for the current user")
        where.add_argument("--sys-prefix", action="store_true", help=f"into this environment ({sys.prefix})")
        args = parser.parse_args(argv[1:])
        path = install(user=args.user, prefix=sys.prefix if args.sys_prefix else None)
        print(f"Installed the backprop kernelspec in {path}")
        return
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=argv, kernel_class=BackpropKernel)


if __name__ == "__main__":
    main()

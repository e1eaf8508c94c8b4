"""The backprop kernelspec: shipped with the package, installable by hand, and it starts with bpmagic loaded."""
import json
import subprocess
import sys

from jupyter_client.kernelspec import KernelSpecManager


def test_installed_with_the_package():
    spec = KernelSpecManager().get_kernel_spec("backprop")
    assert spec.display_name == "Python 3 (backprop)"
    assert spec.argv[1:3] == ["-m", "bpmagic.kernel"]


def test_install_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bpmagic.kernel", "install", "--prefix-for-tests", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode != 0  # unknown options are refused
    from bpmagic.kernel import install

    where = install(prefix=str(tmp_path))
    spec = json.loads((tmp_path / "share/jupyter/kernels/backprop/kernel.json").read_text())
    assert where.endswith("backprop") and spec["display_name"] == "Python 3 (backprop)"
    help_text = subprocess.run([sys.executable, "-m", "bpmagic.kernel", "install", "--help"],
                               capture_output=True, text=True).stdout
    assert "--user" in help_text and "--sys-prefix" in help_text

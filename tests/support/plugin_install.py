"""The test plugin package (tests/support/plugin_pkg) pip-installed for a module's tests, then removed: its ops,
backend and optimizer are found through the entry-point groups as a real plugin's are. Import the fixture into a test
module to use it (`from plugin_install import installed_plugin`)."""
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"


@pytest.fixture(scope="module")
def installed_plugin():
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(PLUGIN)]
    subprocess.run(cmd, check=True)
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "bpmagic-testplugin"], check=True)

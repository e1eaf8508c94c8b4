"""docs/ops.md is generated from the op registry: it must list every op as the registry declares it today."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ops_page_is_up_to_date_with_the_registry():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_ops.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ops_page_lists_every_registered_op_and_a_computed_coverage():
    import bpmagic as bp

    page = (ROOT / "docs" / "ops.md").read_text()
    for name in bp.ops.registry():
        assert f"| `{name}` |" in page, name
    standard = [s for s in (ROOT / "docs" / "array_api_functions.txt").read_text().splitlines()
                if s and not s.startswith("#")]
    assert f"of the {len(standard)} functions of the Python array API" in page

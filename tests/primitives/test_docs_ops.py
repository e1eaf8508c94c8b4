"""docs/ops.md is generated from the op registry: it must list every op as the registry declares it today."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def test_every_op_declares_its_vjp_math():
    """Each op states its VJP in one line (vjp_math=, beside its definition): the page never says "not declared
    yet", so a new op that forgets it fails here."""
    import bpmagic as bp
    from bpmagic.ops.core import op_info

    missing = [name for name, op in bp.ops.registry().items() if not (op_info(op) and op_info(op).vjp_math)]
    assert not missing, f"ops without vjp_math=: {missing}"
    page = (ROOT / "docs" / "ops.md").read_text()
    assert "not declared yet" not in page

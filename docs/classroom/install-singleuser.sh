#!/usr/bin/env bash
# Installs bpmagic into a JupyterHub single-user environment (one that already has JupyterLab and jupyterhub, as the
# Jupyter Docker Stacks images do), as students get it: the `backprop` kernel, the JupyterLab extension, and
# nbgrader's student side (assignment list, Validate) without the teacher's formgrader, Create Assignment and
# course list.
#
#   install-singleuser.sh BPMAGIC_WHEEL      (the Dockerfile beside this runs it; so does tests/classroom/test_hub.py)
#
# $PYTHON picks the environment's interpreter (default: python3 on PATH).
set -euo pipefail
wheel=${1:?usage: install-singleuser.sh path/to/bpmagic-*.whl}
py=${PYTHON:-python3}

"$py" -m pip install --no-cache-dir --disable-pip-version-check "${wheel}[lab]" "nbgrader>=0.9.5"
teacher=(@jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment @jupyter/nbgrader:course-list)
"$py" -m jupyter labextension disable --level=sys_prefix "${teacher[@]}"
"$py" -m jupyter labextension lock --level=sys_prefix "${teacher[@]}"  # not to be re-enabled from the UI
for ext in formgrader course_list; do
    "$py" -m jupyter server extension disable --sys-prefix "nbgrader.server_extensions.$ext"
done

# what a student's server must have: fail the image build, not the first lesson. (Each listing is read whole
# before it is searched: `list | grep -q` would close the pipe early and fail the listing under pipefail.)
kernels=$("$py" -m jupyter kernelspec list)
grep -qw backprop <<<"$kernels" || { echo "the backprop kernel is not installed: $kernels" >&2; exit 1; }
extensions=$("$py" -m jupyter labextension list 2>&1)
grep -qE '^\s+bpmagic v.*enabled' <<<"$extensions" \
    || { echo "bpmagic's JupyterLab extension is not enabled: $extensions" >&2; exit 1; }
"$py" -c "import bpmagic, nbgrader"

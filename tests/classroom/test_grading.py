"""Labs 01–03, 08 and 09 grade themselves with nbgrader, as a course runs it: `nbgrader generate_assignment` makes the students'
version (solutions cleared, hidden tests removed), students submit, `nbgrader autograde` runs each submission on
the backprop kernel with the hidden tests put back, and the scores tell a right answer from a wrong one.

The submissions are written as students would write them (their own style, not the labs' worked answers), with
mistakes learners make: forgetting a value's second use, a missing power, a random start that gets stuck, an
adjoint not carried back through time, a residual branch left uncentred.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: ./dev test installs it")
from nbgrader.api import Gradebook  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABS = {"lab01": "01_reverse_accumulation", "lab02": "02_gradient_checking", "lab03": "03_xor_and_encoder",
        "lab08": "08_backprop_through_time", "lab09": "09_depth_that_trains", "lab10": "10_gpus_and_workers"}

LAB01_WALK = """a, b = 1.5, -0.5
c = a * b
t = np.tanh(c)
d = t + a
L = d * d + b
gd = 2 * d
gc = gd * (1 - np.tanh(c) ** 2)
"""
LAB08_FORWARD = """u = np.linspace(-0.5, 0.5, T)
S = STARTS.astype(np.float64)
pos, vel = S[:, :1], S[:, 1:]
for t in range(T):
    pos, vel = pos + DT * vel, vel + DT * u[t]
L = np.mean(pos ** 2 + vel ** 2)
n = S.shape[0]
"""
LAB09_NET = """%%backprop --steps 60 --optimizer momentum --lr 0.05 --batch-size 64 --reset --name centred
W_in: Param = randn(64, WIDTH) / 8
Ws: Param = [randn(WIDTH, WIDTH) / WIDTH ** 0.5 for _ in range(DEPTH)]
W_out: Param = randn(WIDTH, 10) / WIDTH ** 0.5
x: Input = X
y: Target = Y
h = x @ W_in
"""
# graded solution cell -> what each student submits there ("carl" hands in the empty cell he was given)
ANSWERS = {
    "lab01-by-hand": {
        "ada": LAB01_WALK + "dL_da = gd + gc * b\ndL_db = 1 + gc * a",
        "bob": LAB01_WALK + "dL_da = gc * b          # a's use in d = t + a forgotten\ndL_db = 1 + gc * a",
    },
    "lab02-cube": {
        "ada": """@bp.primitive
def cube(xp, x):
    return x * x * x

@cube.defvjp
def _(g, out, x):
    return 3 * x * x * g""",
        "bob": """@bp.primitive
def cube(xp, x):
    return x ** 3

@cube.defvjp
def _(g, out, x):
    return g * 3 * x          # the power rule half done""",
    },
    "lab03-xor2": {
        "ada": """%%backprop --epochs 2000 --lr 0.5 --batch-size 4 --name xor2 --reset --seed 0
x: Input = X
y: Target = Y
W1: Param = randn(2, 2) * 1.0
b1: Param = zeros(2)
W2: Param = randn(2, 1) * 1.0
b2: Param = zeros(1)
p = sigmoid(tanh(x @ W1 + b1) @ W2 + b2)
loss: Loss = binary_cross_entropy(p, y)""",
        "bob": """%%backprop --epochs 2000 --lr 0.5 --batch-size 4 --name xor2 --reset --seed 1
x: Input = X
y: Target = Y
W1: Param = randn(2, 2)
b1: Param = zeros(2)
W2: Param = randn(2, 1)
b2: Param = zeros(1)
h = tanh(x @ W1 + b1)
p = sigmoid(h @ W2 + b2)
loss: Loss = binary_cross_entropy(p, y)""",
    },
    "lab08-through-time": {
        "ada": LAB08_FORWARD + """adj_p = 2 * pos / n
adj_v = 2 * vel / n
grads = []
for t in range(T - 1, -1, -1):
    grads.append(DT * np.sum(adj_v))
    adj_v = adj_v + DT * adj_p
dL_du = np.array(grads[::-1])""",
        # right at the last step only: the velocity's adjoint never picks up the position's
        "bob": LAB08_FORWARD + "dL_du = np.full(T, DT * np.sum(2 * vel / n))",
    },
    "lab09-centred": {
        "ada": LAB09_NET + """for W in Ws:
    h = h + 0.5 * np.tanh(h @ W / 2)     # sigmoid(z) - 1/2, written with tanh
loss: Loss = cross_entropy(h @ W_out, y)""",
        "bob": LAB09_NET + """for W in Ws:
    h = h + sigmoid(h @ W)
loss: Loss = cross_entropy(h @ W_out, y)""",
    },
    "lab10-combine": {
        "ada": """def combine(grads, counts):
    weights = np.array(counts) / np.sum(counts)
    return np.tensordot(weights, np.array(grads), axes=1)""",
        "bob": """def combine(grads, counts):
    return sum(grads) / len(grads)      # every worker's gradient counted alike""",
    },
}
STUDENTS = ("ada", "bob", "carl")
# carl's empty answer where what a student reads differs: a plain cell (01), a %%backprop cell without its Params (03)
# and one whose loop body is missing (09); elsewhere it is 01's NotImplementedError again, not worth a grading run
EMPTY_ANSWER_LABS = {"lab01", "lab03", "lab09"}


def students_of(assignment):
    return STUDENTS if assignment in EMPTY_ANSWER_LABS else STUDENTS[:2]


EXPECTED_SCORE = {"ada": 2.0, "bob": 0.0, "carl": 0.0}  # per lab: its one graded cell is worth 2 points

# what the student reads under the failed test cell (bob's mistake, carl's empty cell)
FEEDBACK = {
    ("lab01", "bob"): "dL_da is",
    ("lab02", "bob"): "The gradient of cube is wrong",
    ("lab03", "bob"): "xor2 ended with a loss of",
    ("lab08", "bob"): "vel's adjoint gains DT times pos's adjoint",
    ("lab09", "bob"): "centred ended with a loss of",
    ("lab01", "carl"): "NotImplementedError",
    ("lab03", "carl"): "the cell has no Param",
    ("lab09", "carl"): "NotImplementedError",
    ("lab10", "bob"): "the combined gradient[",
}


@pytest.fixture(scope="module", autouse=True)
def venv_on_path():
    """nbgrader runs `alembic` (its database migrations) from PATH, as in an activated environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        yield


def nbgrader(course: Path, *args):
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def graded_cells(nb):
    return {c.metadata.nbgrader["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course directory after generate_assignment, three students' submissions and autograde."""
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        "c.CourseDirectory.course_id = 'backprop'\n"
        "c.Execute.timeout = 600  # a training cell on a busy 2-core machine\n"
        "c.Execute.startup_timeout = 300\n")
    for assignment, stem in LABS.items():
        (course / "source" / assignment).mkdir(parents=True)
        shutil.copy(EXAMPLES / f"{stem}.ipynb", course / "source" / assignment)
        nbgrader(course, "generate_assignment", assignment)
        released = nbformat.read(course / "release" / assignment / f"{stem}.ipynb", as_version=4)
        for student in students_of(assignment):
            submission = nbformat.from_dict(released)
            for grade_id, cell in graded_cells(submission).items():
                if student in ANSWERS.get(grade_id, {}):
                    cell.source = ANSWERS[grade_id][student]
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(submission, folder / f"{stem}.ipynb")
        nbgrader(course, "autograde", assignment)
    return course


@pytest.mark.slow
@pytest.mark.parametrize("assignment", LABS)
def test_the_students_version_has_no_answers_and_no_hidden_tests(course, assignment):
    source = graded_cells(nbformat.read(course / "source" / assignment / f"{LABS[assignment]}.ipynb", 4))
    released = graded_cells(nbformat.read(course / "release" / assignment / f"{LABS[assignment]}.ipynb", 4))
    assert source.keys() == released.keys() and len(released) == 2  # a solution cell and its tests
    for grade_id, cell in released.items():
        given = source[grade_id].source
        if "### BEGIN SOLUTION" in given:
            answer = given.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].strip()
            assert "YOUR CODE HERE" in cell.source and answer.splitlines()[0].strip() not in cell.source
            assert cell.source.splitlines()[0] == given.splitlines()[0]  # e.g. the %%backprop options stay
        if "### BEGIN HIDDEN TESTS" in given:
            hidden = given.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0].strip()
            assert "HIDDEN" not in cell.source and hidden.splitlines()[0] not in cell.source
            assert "bp.check." in cell.source  # the visible test a student can run


@pytest.mark.slow
@pytest.mark.parametrize("assignment", LABS)
def test_autograde_scores_a_right_answer_full_and_wrong_ones_zero(course, assignment):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop") as gb:
        scores = {s: (gb.find_submission(assignment, s).score, gb.find_submission(assignment, s).max_score)
                  for s in students_of(assignment)}
    assert scores == {s: (EXPECTED_SCORE[s], 2.0) for s in students_of(assignment)}, scores

    for student in students_of(assignment):
        nb = nbformat.read(course / "autograded" / student / assignment / f"{LABS[assignment]}.ipynb", 4)
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert len(tests) == 1 and "### BEGIN HIDDEN TESTS" in tests[0].source  # put back for grading
        errors = {i: o for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"}
        if student == "ada":
            assert not errors, errors
            assert "✓" in "".join(o.get("text", "") for o in tests[0].outputs)
            continue
        shown = "\n".join("\n".join(o.traceback) for o in errors.values()) + "".join(  # a magic's UsageError
            o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stderr")
        assert FEEDBACK[assignment, student] in shown, shown
        assert "site-packages" not in shown and "bpmagic/" not in shown, shown  # no traceback through bpmagic
        # the mistake fails its graded cells only: the rest of the lab still ran
        graded = {i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata}
        assert set(errors) <= graded, {i: nb.cells[i].source[:80] for i in set(errors) - graded}

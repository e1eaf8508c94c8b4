"""The %%backprop cells tests share, and running one as a user would (through IPython's shell: the `ip` fixture,
with the XOR data the `ns` fixture puts in the namespace; both in tests/conftest.py)."""

XOR_CELL = """\
W1: Param = randn(2, 8) * 0.5
b1: Param = zeros(8)
W2: Param = randn(8, 1) * 0.5
b2: Param = zeros(1)
x: Input = X
y: Target = Y
h = tanh(x @ W1 + b1)
p = sigmoid(h @ W2 + b2)
loss: Loss = binary_cross_entropy(p, y)
"""

# three classes from 8 features (the browser dashboards' model: X, Y set by their notebooks)
THREE_CLASS_CELL = """\
W1: Param = randn(8, 32) * 0.3
b1: Param = zeros(32)
W2: Param = randn(32, 3) * 0.3
b2: Param = zeros(3)
x: Input = X
y: Target = Y
h = tanh(x @ W1 + b1)
loss: Loss = cross_entropy(h @ W2 + b2, y)
"""


def backprop(ip, line, cell=XOR_CELL):
    """Run a %%backprop cell as a user would; returns the ExecutionResult."""
    return ip.run_cell(f"%%backprop {line}\n{cell}")

"""The drawing of a training step's forward graph when the model unrolls a loop (an RNN, a simulation stepped in
time): the forward graph hands every iteration's values to the backward pass as outputs, and those are drawn as one
node beside the "×k" block, not one oval each (lab 08 showed 152 of them under its ×50 block)."""
import re

import numpy as np

import bpmagic as bp
from bpmagic.viz import graph_to_dot

T = 20


def rollout_loss(p, start):
    pos, vel = start[:, :1], start[:, 1:]
    for _ in range(T):
        force = bp.tanh(bp.concatenate([pos, vel], axis=1) @ p["W"])
        pos, vel = pos + 0.1 * vel, vel + 0.1 * force
    return bp.mean(pos ** 2 + vel ** 2)


def output_nodes(source):
    return re.findall(r'^\s*(out\w*) \[label="([^"]*)"', source, re.M)


def test_the_values_an_unrolled_loop_saves_for_backward_are_one_node():
    rng = np.random.default_rng(0)
    params = {"W": (rng.standard_normal((2, 1)) * 0.5).astype(np.float32)}
    start = rng.standard_normal((8, 2)).astype(np.float32)
    run = bp.fit(rollout_loss, params, (start,), steps=1, optimizer=bp.optim.SGD(lr=0.01), backend="numpy")
    graph = run.graph
    saved = [v for v in graph.outputs if v.shape != ()]
    assert len(saved) > T  # what the backward pass reads from every time step

    collapsed = graph_to_dot(graph).source
    outs = dict(output_nodes(collapsed))
    assert f"×{T}:" in collapsed
    assert outs.pop("out_rep0") == f"{len(saved)} values\\n8×2, 8×1", outs  # how many, and their shapes
    assert list(outs.values()) == ["loss\\nscalar"]  # the loss is still drawn on its own
    assert "rep0 -> out_rep0" in collapsed

    every = graph_to_dot(graph, collapse=False).source  # nothing collapsed: every output its own node again
    assert len(output_nodes(every)) == len(graph.outputs) and "out_rep" not in every


def test_a_few_outputs_of_a_block_keep_their_own_names():
    """A traced function returning the loop's last state: two outputs from the block, each drawn with its name."""
    def final_state(x, W):
        h = x
        for _ in range(6):
            h = bp.tanh(h @ W)
        return h, h * 2

    rng = np.random.default_rng(1)
    source = graph_to_dot(bp.trace(final_state, rng.standard_normal((3, 4)), rng.standard_normal((4, 4)))).source
    assert "×" in source and "out_rep" not in source
    assert len(output_nodes(source)) == 2

"""Helpers for a primitive's ONNX counterpart (its `onnx=` facet): the common shapes of a rule.

A rule is `rule(ctx, *names, **params) -> name`: `names` are the ONNX values of the primitive's operands, `params`
its parameters; `ctx` (bpmagic/onnx_export.py) adds nodes (`ctx.node`), constants (`ctx.const`, `ctx.ints`) and
knows the operands' and the result's shapes and dtypes (`ctx.operands`, `ctx.result`). Nothing here imports onnx.
"""
from __future__ import annotations


def op(op_type, **attrs):
    """One ONNX node of the same name over the operands, cast to the result's dtype first (ONNX's arithmetic wants
    one dtype where NumPy promotes)."""
    return lambda ctx, *names, **params: ctx.node(op_type, ctx.cast_to_result(names), **attrs)


def compare(op_type, negate=False):
    """A comparison: operands cast to their common dtype; `negate` wraps it in Not (not_equal)."""
    def rule(ctx, a, b):
        out = ctx.node(op_type, ctx.cast_common([a, b]))
        return ctx.node("Not", [out]) if negate else out
    return rule


def of_x(build):
    """A rule written as a formula over one operand cast to the result's dtype: `build(ctx, x)`."""
    return lambda ctx, x, **params: build(ctx, ctx.cast_to_result([x])[0])

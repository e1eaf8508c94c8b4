"""Elementwise fusion: runs of elementwise equations become one generated kernel.

Small models are launch-bound on a GPU: a tanh layer's backward pass is five kernels that each read and write the
whole array. Fused, it is one kernel that reads the inputs once and writes only what is used later. A group is a
run of consecutive fusible equations (in the executor's order) with the same output shape, so fusing can never
create a cycle; values used only inside the group never reach memory.

Each elementwise primitive declares its expression template with itself (Primitive.fused), in a C-like syntax that
is also valid Python when the names below are NumPy functions (`exp`, `max`, `float(x)` as a cast): the CuPy
backend compiles it with `cupy.ElementwiseKernel`, and the tests evaluate the very same string with NumPy on a
machine without a GPU (and compile it with NVRTC: tests/cuda/test_cuda_compile.py). The language's functions are CUDA's
math library; `numpy_namespace` lists them.

Each equation computes in its result's type, as NumPy does: an operand of another type is converted first (C would
add an int and a float in float, and `where_` takes two branches of one type), and a literal is written in the type
it computes in (see Literal.dtype_in), so a float32 model's kernel has no double arithmetic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ir import Literal, Var
from ..ops.special import erf_impl  # CUDA's erf, for evaluating kernel bodies with NumPy

C_TYPES = {"float32": "float", "float64": "double", "bool": "bool", "int32": "int", "int64": "long"}
# the helper `where_` (CUDA has no ternary function); the kernel's preamble defines it
PREAMBLE = "template <typename C, typename T> __device__ T where_(C c, T a, T b) { return c ? a : b; }\n"
# C has no literal for infinity or NaN: CuPy's kernel header (cupy/math_constants.h) defines CUDA's names for them
_NONFINITE = {"float": ("CUDART_INF_F", "CUDART_NAN_F"), "double": ("CUDART_INF", "CUDART_NAN")}


def _fusible(e) -> bool:
    return (e.primitive.elementwise and len(e.outputs) == 1
            and all(str(np.dtype(v.dtype)) in C_TYPES for v in list(e.inputs) + list(e.outputs)))


@dataclass
class Group:
    """Consecutive fusible equations computed by one kernel."""

    start: int  # position of the first equation in the list given to find_groups
    eqns: list
    inputs: list = field(default_factory=list)  # Vars read from outside the group, in first-use order
    outputs: list = field(default_factory=list)  # Vars the rest of the program (or its result) needs
    body: str = ""  # the kernel's statements: "y0 = ...;"

    @property
    def name(self) -> str:
        ops = "_".join(dict.fromkeys(e.primitive.name for e in self.eqns))
        return f"bp_fused_{ops}"[:60]

    def params(self):
        """CuPy ElementwiseKernel parameter lists: ("float32 x0, float32 x1", "float32 y0")."""
        ins = ", ".join(f"{np.dtype(v.dtype)} x{i}" for i, v in enumerate(self.inputs))
        outs = ", ".join(f"{np.dtype(v.dtype)} y{j}" for j, v in enumerate(self.outputs))
        return ins, outs


def find_groups(eqns, needed_after, stops=(), min_size=2):
    """Groups of consecutive fusible equations with equal output shapes.

    needed_after(var, k): is `var` read by an equation after position k, or returned? stops: positions a group must
    not span (the executor's guard sits there).
    """
    groups, run = [], []

    def close():
        if len(run) >= min_size:
            groups.append(_build(list(run), needed_after))
        run.clear()

    for k, e in enumerate(eqns):
        fusible = _fusible(e)
        if k in stops or not fusible or (run and e.outputs[0].shape != run[-1][1].outputs[0].shape):
            close()
        if fusible:
            run.append((k, e))
    close()
    return groups


def _build(run, needed_after) -> Group:
    last = run[-1][0]
    members = [e for _, e in run]
    made = {e.outputs[0] for e in members}
    group = Group(run[0][0], members)
    expr = {}  # Var made in the group -> its expression, or the name it was stored under
    uses = {}
    for e in members:
        for v in e.inputs:
            if isinstance(v, Var) and v in made:
                uses[v] = uses.get(v, 0) + 1
    for e in members:
        out = e.outputs[0]
        ctype = C_TYPES[str(np.dtype(out.dtype))]
        args = []
        for v in e.inputs:
            if isinstance(v, Literal):
                text = _literal(v, e)
            elif v in made:
                text = expr[v]
            else:
                if v not in group.inputs:
                    group.inputs.append(v)
                text = f"x{group.inputs.index(v)}"
            dtype = np.dtype(v.dtype_in(e) if isinstance(v, Literal) else v.dtype)
            if np.dtype(out.dtype).kind == "f" and dtype != np.dtype(out.dtype):
                text = f"{ctype}({text})"  # computed in the result's type, as NumPy does
            args.append(text)
        text = e.primitive.fused.format(*args, T=ctype)
        if needed_after(out, last):
            name = f"y{len(group.outputs)}"
            group.outputs.append(out)
            group.body += f"{name} = {text};\n"
            text = name  # later members read the stored value instead of recomputing it
        elif uses.get(out, 0) > 1:  # read twice here: a local, so expressions never grow exponentially
            name = f"t{len(expr)}"
            group.body += f"{ctype} {name} = {text};\n"
            text = name
        expr[out] = text
    return group


def _literal(v, e) -> str:
    """A literal written in the C type it computes in (see Literal.dtype_in)."""
    dtype = np.dtype(v.dtype_in(e))
    ctype = C_TYPES.get(str(dtype), "double")
    value = v.value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if dtype.kind != "f":
        return f"{ctype}({int(value)})"
    if math.isfinite(value):
        return f"{ctype}({float(value)!r})"
    inf, nan = _NONFINITE[ctype]
    return f"{ctype}({nan if math.isnan(value) else ('-' if value < 0 else '') + inf})"


def numpy_namespace():
    """Names that make a kernel body valid NumPy: for checking the generated code where there is no GPU."""
    same = ["exp", "log", "tanh", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "log1p", "expm1", "log2", "log10",
            "exp2", "floor", "ceil", "rint", "copysign"]
    ns = {name: getattr(np, name) for name in same}
    ns.update({"asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "asinh": np.arcsinh, "atanh": np.arctanh,
               "erf": lambda x: erf_impl(np, x), "fabs": np.abs, "pow": np.power, "max": np.maximum, "min": np.minimum,
               "where_": np.where, "float": np.float32, "double": np.float64, "bool": np.bool_, "int": np.int32,
               "long": np.int64, "true": True, "false": False, "CUDART_INF_F": np.float32(np.inf),
               "CUDART_NAN_F": np.float32(np.nan), "CUDART_INF": np.inf, "CUDART_NAN": np.nan})
    return ns


def numpy_kernel(in_params: str, out_params: str, body: str):
    """What the generated kernel computes, in NumPy: kernel(*inputs, *outputs) writes the outputs (broadcasting
    the inputs like cupy.ElementwiseKernel). The reference for checking generated code without a GPU."""
    n_in = len([p for p in in_params.split(",") if p.strip()])
    lines = [line.rstrip(";").split(" = ", 1) for line in body.strip().splitlines()]

    def kernel(*arrays):
        inputs, outputs = arrays[:n_in], arrays[n_in:]
        shape = outputs[0].shape
        ns = numpy_namespace()
        ns.update({f"x{i}": np.broadcast_to(np.asarray(x), shape) for i, x in enumerate(inputs)})
        for target, rhs in lines:
            name = target.split()[-1]  # "float t3" declares a local
            ns[name] = np.asarray(eval(rhs, ns))  # noqa: S307 (our own generated code)
            if name.startswith("y"):
                out = outputs[int(name[1:])]
                out[...] = ns[name]
                ns[name] = out
        return outputs

    return kernel

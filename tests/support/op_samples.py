"""Every registered op on every sample input it declares (OpInfo's idea): the table the gradient checks, the JAX
comparisons, the ONNX export and the gradient-check front ends are run over. float64 arrays among a sample's
arguments are differentiated; integer and boolean arrays, Python numbers and other arguments are held fixed."""
from __future__ import annotations

import zlib

import numpy as np

import bpmagic as bp
from bpmagic.ops import registry
from bpmagic.ops.core import op_info

OPS = registry()


def _is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _differentiated(args):
    """Positions of the arguments that are differentiated: float arrays, and lists of float arrays (concatenate)."""
    return [i for i, a in enumerate(args)
            if _is_float_array(a) or (isinstance(a, list) and a and all(_is_float_array(x) for x in a))]


class Sample:
    def __init__(self, name, index, op, args, kwargs):
        self.name, self.index, self.op, self.args, self.kwargs = name, index, op, tuple(args), dict(kwargs)
        self.info = op_info(op)
        self.diff = _differentiated(self.args)

    @property
    def id(self):
        return f"{self.name}[{self.index}]"

    def call(self, op, *diff_args):
        """op on this sample, with the differentiated arguments replaced by `diff_args`."""
        args = list(self.args)
        for i, a in zip(self.diff, diff_args):
            args[i] = a
        return op(*args, **self.kwargs)

    def flat(self, op, *diff_args):
        """The output as one array (ops returning several arrays give them concatenated, flattened)."""
        out = self.call(op, *diff_args)
        if isinstance(out, (list, tuple)):
            return bp.concatenate([bp.reshape(o, (-1,)) for o in out])
        return out

    def __repr__(self):
        return f"Sample({self.id})"


def _samples():
    table = []
    for name in sorted(OPS):
        info = op_info(OPS[name])
        if info is None or info.samples is None:
            continue  # test_every_op_declares_samples_and_reference names it
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        for i, (args, kwargs) in enumerate(info.samples(rng)):
            table.append(Sample(name, i, OPS[name], args, kwargs))
    return table


SAMPLES = _samples()

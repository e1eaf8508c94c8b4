"""Training: optimizers with live hyperparameters and the compiled training step."""
from . import optim
from .layers import default_groups, layer_of
from .step import CompiledStep, compile_step

__all__ = ["optim", "CompiledStep", "compile_step", "layer_of", "default_groups"]

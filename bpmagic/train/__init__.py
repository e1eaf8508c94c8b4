"""Training: optimizers with live hyperparameters and the compiled training step."""
from . import metrics, optim, schedules
from .layers import default_groups, layer_of
from .controls import Controls
from .step import CompiledStep, compile_step
from .fitting import fit, last_run
from .trainer import Run

__all__ = ["optim", "schedules", "metrics", "CompiledStep", "compile_step", "layer_of", "default_groups", "Controls", "Run", "fit", "last_run"]

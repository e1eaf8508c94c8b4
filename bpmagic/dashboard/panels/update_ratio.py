"""Update-to-weight ratio per layer: |lr * update| / |weights|; around 1e-3 is healthy (Karpathy's rule of thumb)."""
from __future__ import annotations

from ...train.stats import UPDATE_RATIO
from ..dashboard import Panel
from ..views import LayerBarsView


class UpdateRatioPanel(Panel):
    order = 30

    def __init__(self, run):
        super().__init__(run)
        self.layers = list(run.layers)
        self.widget = LayerBarsView(title="Update / weight ratio per layer", layers=self.layers,
                                    series=[UPDATE_RATIO.label], reference=1e-3)

    def update(self, run):
        h = run.history
        self.widget.show([[UPDATE_RATIO.latest(h, layer)] for layer in self.layers])

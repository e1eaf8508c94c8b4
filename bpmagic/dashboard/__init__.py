"""The live dashboard shown under a %%backprop cell: panels assembled from the entry-point group bpmagic.panels.

It is a client of a Run: it subscribes to the run (the trainer calls it at most ~10 times a second from its
worker thread) and writes widget traits under `hold_sync`, so each panel sends one message per update.
"""
from .dashboard import Dashboard, Panel

__all__ = ["Dashboard", "Panel"]

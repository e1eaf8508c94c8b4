"""The built-in panels, registered in the entry-point group bpmagic.panels like any plugin's."""

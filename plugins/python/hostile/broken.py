"""Raises as soon as it is imported (at run time: only `py:import` imports it)."""

raise RuntimeError("broken.py refuses to be imported")

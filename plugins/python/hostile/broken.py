"""Raises as soon as it is imported. Nothing imports it while the plugin is
built (importing it then would fail the build), so it is not in the
component: `py:import` finds no module."""

raise RuntimeError("broken.py refuses to be imported")

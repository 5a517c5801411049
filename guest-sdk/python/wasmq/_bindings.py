"""Finds the bindings componentize-py generates for the plugin's world.

`wasmq plugin build` targets a world made from the plugin's manifest: it
imports `kv`, `enqueue` and `wasi:http` only when the manifest grants them,
so a module here may be missing, and names that two packages share
(`types`) get their package's prefix. This module hides both.
"""

import importlib


def load(*names):
    """The first of the `wit_world.imports` modules `names` that exists, or None."""
    for name in names:
        try:
            return importlib.import_module("wit_world.imports." + name)
        except ImportError:
            continue
    return None


types = load("wasmq_plugin_types", "types")
log = load("log")
kv = load("kv")
enqueue = load("enqueue")
flow = load("flow")
progress = load("progress")
http_types = load("wasi_http_types")
outgoing_handler = load("outgoing_handler")
streams = load("streams")

"""A hostile Python plugin: one misbehaviour per task type."""

import importlib
import socket
import sys

from wasmq import Task, handler


@handler("py:spin")
def spin(task: Task, payload):
    """Loops forever: stopped when its fuel runs out."""
    n = 0
    while True:
        n += 1


@handler("py:membomb")
def membomb(task: Task, payload):
    """Allocates without end: stopped at its memory cap."""
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


@handler("py:recurse")
def recurse(task: Task, payload):
    """Recurses without end, past Python's own recursion limit."""
    sys.setrecursionlimit(10_000_000)

    def down(n):
        return down(n + 1) + 1

    return down(0)


@handler("py:import")
def late_import(task: Task, payload):
    """Imports, at run time, a module nothing imported while the plugin was
    built: it is not in the component (and would raise if it were)."""
    importlib.import_module("broken")


@handler("py:flood")
def flood(task: Task, payload):
    """Prints megabytes: stopped at its log limit."""
    line = "x" * 1000
    for _ in range(10_000):
        print(line)


@handler("py:raise")
def fail(task: Task, payload):
    """An uncaught exception."""
    raise ValueError("the hostile plugin raised this")


@handler("py:socket")
def connect(task: Task, payload):
    """Opens a socket to the worker's Redis: refused (plugins get none)."""
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.connect(("127.0.0.1", 6379))


@handler("py:file")
def read_file(task: Task, payload):
    """Reads a file of the worker's host: there are none."""
    with open("/etc/hostname") as file:
        return file.read()

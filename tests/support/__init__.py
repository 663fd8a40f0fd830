"""Helpers for the tests and benchmarks (not part of the installed package): ``data`` (generated
datasets and untrained runs) and ``serving`` (the server in a child process and its clients).
Benchmarks import them from the checkout (``sys.path`` gets its root)."""

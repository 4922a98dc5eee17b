"""The ``symphony`` command and the local stack: the supervisor, demo, load generator and reports.

The one package that may import every other; nothing imports it.
"""

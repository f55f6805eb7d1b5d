"""Plan: what to measure, decided before anything runs.

Takes a matrix file (YAML) and the version catalogue; gives validated cells (version
spec x scenario x typed parameters x repetition), each scenario's knobs, and the
HAProxy log format that the stack configures and the analysis parses. Pure: no Docker,
no files written. Imports nothing from the other stages.
"""

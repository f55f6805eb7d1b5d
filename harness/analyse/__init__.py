"""Analyse: a cell's raw files to its record's numbers, as pure functions. No Docker here.

Takes the files in a cell's folder (Locust stats, HAProxy log and counters, probe
samples, packet captures, census, CPU samples); gives the cell's metrics, the verdicts
between versions (compare) and the calibration judgements. May import the plan, never
the stack, the Docker SDK or the report.
"""

"""Report: a run's record to publishable outputs (no Docker).

Takes a run folder (run.json, each cell's cell.json and metrics); gives report.md,
report.html with plots, results.csv/json, verdicts.json and the results index. May
import analyse and plan, never stack or the Docker SDK.
"""

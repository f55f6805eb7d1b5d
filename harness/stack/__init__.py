"""Stack: everything that talks to Docker or builds what Docker runs.

Takes the plan's cells; gives images (content-hash cached), each cell's rendered
haproxy.cfg and compose.yaml, a Compose project brought up and always taken down, the
load run in it, and the raw files read from it (counters, CPU samples, logs,
provenance). May import the plan; nothing in plan, analyse or report imports it.
"""

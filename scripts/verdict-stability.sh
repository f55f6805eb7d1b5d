#!/usr/bin/env bash
# How stable is the headline verdict? `make verdict-stability` (not part of `make test`).
#
# Runs the chunked-stall part of matrices/default.yaml N times (default 5) and prints, per
# run, the stalled connections per version and TLS setting and each version's verdict
# against the baseline with its p-value, then "k of N runs: regression p<0.001": the runs
# where 2.6.12 (debian:bookworm) is a regression against the baseline with p < 0.001 in
# every TLS setting while no other version is.
#
#   N=5                     how many runs
#   HOG_RUNS="2 4"          runs with a CPU hog on one core during the whole run
#                           (stress-ng --cpu 1 if installed, else a bounded busy loop)
#   MATRIX=matrices/default.yaml
#   LOCK=/tmp/harness-docker.lock  each run holds it (flock), so nothing else shares the
#                           engine or the CPU during a measurement; it is released between runs
#   HARNESS_RESULTS         where the runs go (default: a fresh temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5}
HOG_RUNS=${HOG_RUNS:-}
MATRIX=${MATRIX:-matrices/default.yaml}
LOCK=${LOCK:-/tmp/harness-docker.lock}
PY=${PY:-.venv/bin/python}
CANDIDATE=${CANDIDATE:-debian:bookworm}
export HARNESS_RESULTS=${HARNESS_RESULTS:-$(mktemp -d /tmp/verdict-stability.XXXXXX)}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "verdict-stability: N must be a positive integer, not '$N'" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The chunked-stall entries of the matrix, with its versions, baseline, load and verdicts.
"$PY" - "$MATRIX" "$work/chunked-stall.yaml" <<'PYEOF'
import sys, yaml
src, dst = sys.argv[1:]
matrix = yaml.safe_load(open(src))
matrix["name"] = "verdict-stability"
matrix["scenarios"] = [s for s in matrix["scenarios"] if s["name"] == "chunked-stall"]
if not matrix["scenarios"]:
    sys.exit(f"verdict-stability: {src} has no chunked-stall entry")
yaml.safe_dump(matrix, open(dst, "w"), sort_keys=False)
PYEOF

hog_cmd() {
    if command -v stress-ng >/dev/null; then
        echo "stress-ng --cpu 1 --timeout 900s --quiet"
    else
        echo "timeout 900 sh -c 'while :; do :; done'"
    fi
}

# One run, inside the lock: the hog (if asked) lives exactly as long as the matrix.
run_one() {
    local hog=$1
    local cmd=("$PY" -m harness matrix "$work/chunked-stall.yaml")
    if [[ $hog == yes ]]; then
        flock "$LOCK" bash -c "$(hog_cmd) & hog=\$!; trap 'kill \$hog 2>/dev/null' EXIT; \"\$@\"" _ "${cmd[@]}"
    else
        flock "$LOCK" "${cmd[@]}"
    fi
}

summary=$work/summary.txt
: >"$summary"
for i in $(seq 1 "$N"); do
    hog=no
    for h in $HOG_RUNS; do [[ $h == "$i" ]] && hog=yes; done
    before=$(ls -1 "$HARNESS_RESULTS" 2>/dev/null | sort | tail -n1 || true)
    start=$(date +%s)
    if ! run_one "$hog" >"$work/run-$i.log" 2>&1; then
        echo "run $i: the matrix failed (hog: $hog); its output ends:" >&2
        tail -n 20 "$work/run-$i.log" >&2
    fi
    took=$(( $(date +%s) - start ))
    run_dir=$(ls -1d "$HARNESS_RESULTS"/*/ 2>/dev/null | sort | tail -n1)
    if [[ -z $run_dir || $(basename "$run_dir") == "$before" ]]; then
        echo "run $i: no run folder" | tee -a "$summary"
        continue
    fi
    "$PY" - "$run_dir" "$i" "$hog" "$took" "$CANDIDATE" <<'PYEOF' | tee -a "$summary"
import json, re, sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from harness.analyse.probe_samples import stalled as is_stalled

run_dir, i, hog, took, candidate = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
cells = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/cell.json"))]
stalled = defaultdict(lambda: [0, 0])
by_size = defaultdict(lambda: defaultdict(lambda: [0, 0]))
label_of = {}
for c in cells:
    if c["scenario"] != "chunked-stall":
        continue
    label_of[c["version"]["spec"]] = c["version"]["label"].split(" ")[0]
    probe = (c.get("metrics") or {}).get("probe") or {}
    key = (c["version"]["label"].split(" ")[0], c["params"]["tls"])
    stalled[key][0] += probe.get("stalled", 0)
    stalled[key][1] += probe.get("connections", 0)
    samples = run_dir / c["cell"] / "probe.jsonl"
    for line in samples.read_text().splitlines() if samples.exists() else []:
        s = json.loads(line)
        size = by_size[key][(s.get("sweep") or {}).get("chunk_size")]
        size[1] += 1
        size[0] += is_stalled(s)
failed = [c["cell"] for c in cells if c.get("status") != "ok"]
verdicts = json.loads((run_dir / "verdicts.json").read_text()) if (run_dir / "verdicts.json").exists() else []
tls_settings = sorted({t for _, t in stalled})
counts = "; ".join(
    f"tls={t}: " + ", ".join(f"{v} {s}/{n}" for (v, tt), (s, n) in sorted(stalled.items()) if tt == t)
    for t in tls_settings
)
# How long the cells took (without any wait for the lock): first start to last finish.
times = [(datetime.fromisoformat(c["started"]), datetime.fromisoformat(c["finished"]))
         for c in cells if c.get("started") and c.get("finished")]
took = f"{(max(f for _, f in times) - min(s for s, _ in times)).total_seconds():.0f}" if times else took
print(f"run {i} (hog: {hog}, {took} s): stalled {counts}" + (f"; FAILED cells: {failed}" if failed else ""))
worst = None  # the stalling size (one that stalled anything) with the lowest share
for (version, tls), sizes in sorted(by_size.items()):
    if any(hit for hit, _ in sizes.values()):  # per chunk size where anything stalled
        shown = ", ".join(f"{k}: {h}/{n}" for k, (h, n) in sorted(sizes.items(), key=lambda kv: kv[0] or 0))
        print(f"  {version} tls={tls} per chunk size: {shown}")
        for k, (h, n) in sizes.items():
            if h and (worst is None or h / n < worst[0] / worst[1]):
                worst = (h, n, version, tls, k)
if worst:
    print(f"  worst stalling size: {worst[0]}/{worst[1]} ({worst[2]} tls={worst[3]} size {worst[4]})")
ok = bool(verdicts) and not failed
want = label_of.get(candidate, candidate)
seen_candidate = set()
for v in verdicts:
    if "chunked-stall" not in v["metric"]:
        continue
    tls = (re.search(r"tls=([^\s\]]+)", v["metric"]) or [None, "?"])[1]
    p = v["p_value"]
    what = "stalled" if v["metric"].endswith("connections stalled") else "ends"
    print(f"  tls={tls} {what}: {v['candidate_label']} vs {v['baseline_label']}: {v['verdict']}, "
          f"p={p:.2g}" if p is not None else f"  tls={tls} {what}: {v['candidate_label']}: {v['verdict']}")
    if what != "stalled":
        # How connections ended (FIN vs close_notify + FIN) is its own, categorical
        # verdict: "changed" there says nothing about the stall.
        continue
    if v["candidate_label"].startswith(want):
        seen_candidate.add(tls)
        ok &= v["verdict"] == "regression" and p is not None and p < 0.001
    else:
        ok &= v["verdict"] != "regression"
ok &= seen_candidate == set(tls_settings) and bool(tls_settings)
print(f"  => {'regression p<0.001' if ok else 'NOT regression p<0.001'}")
PYEOF
done
k=$(grep -c "=> regression p<0.001" "$summary" || true)
echo "$k of $N runs: regression p<0.001"
# The per-connection target: every stalling size at >= 90 % of its connections in every cell.
grep "worst stalling size" "$summary" \
    | awk '{split($4, f, "/"); print f[1] / f[2], $0}' | sort -g | head -n1 \
    | sed 's/^[^ ]* *worst stalling size:/worst stalling size over the runs:/' || true
echo "(runs in $HARNESS_RESULTS)"

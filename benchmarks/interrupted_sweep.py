"""Benchmark: what an interrupted sweep loses when it resumes (issue "Sweeps", bar).

Starts ``dermclean sweep --fresh`` with the given params, kills the driver with SIGKILL (its whole
process group) once ``--kill-after`` trials have completed, stops the local Ray that the driver left
behind (``ray stop --force``: every Ray process on this machine), then runs ``dermclean sweep --resume``
and prints, from the two logs, ``summary.json`` and the MLflow tracking store:

* the trials completed before the kill, those in flight at the kill and those never started;
* which trials the resumed sweep ran: the lost work is the in-flight trials, each either run again
  or, when Tune had not yet saved it in its experiment state, replaced by a newly sampled trial; no
  trial completed before the kill may run twice, and the sweep still ends with ``num_samples`` trials;
* the child runs under the sweep's MLflow parent run (one per trial, each once);
* the resumed part's overhead (``summary.json``, ``timing``).

Run from the repository root after ``dvc repro detect`` (the sweep needs ``models/detector``); the
trial count is params.yaml's ``sweep.num_samples`` (take more trials than ``--kill-after`` plus the
concurrency, so some are never started at the kill):

    python benchmarks/interrupted_sweep.py --kill-after 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

STARTED = re.compile(r"Trial (\S+) started with configuration")
COMPLETED = re.compile(r"Trial (\S+) completed after")


def trial_names(log: Path, pattern: re.Pattern[str]) -> list[str]:
    names = pattern.findall(log.read_text(errors="replace")) if log.exists() else []
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    """The benchmark as one script (see the module docstring): options, the measurement, its report; over 60
    lines for its options and printed table only."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kill-after", type=int, default=8, help="completed trials before the SIGKILL")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--out", type=Path, default=Path("reports/sweep"))
    p.add_argument("--logs", type=Path, default=Path("reports/sweep_interrupted"),
                   help="folder for the two sweep logs and the report")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the kill point")
    args = p.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    first, second = args.logs / "first.log", args.logs / "resumed.log"
    common = ["--params", str(args.params), "--out", str(args.out)]

    with first.open("w") as fh:
        driver = subprocess.Popen(["dermclean", "sweep", "--fresh", *common], stdout=fh, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    began = time.monotonic()
    while len(trial_names(first, COMPLETED)) < args.kill_after:
        if driver.poll() is not None:
            sys.exit(f"the sweep ended (exit {driver.returncode}) before {args.kill_after} trials completed; "
                     f"raise sweep.num_samples or lower --kill-after (log: {first})")
        if time.monotonic() - began > args.timeout:
            os.killpg(driver.pid, signal.SIGKILL)
            sys.exit(f"no kill point within {args.timeout:.0f} s (log: {first})")
        time.sleep(1.0)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    completed = trial_names(first, COMPLETED)
    in_flight = [t for t in trial_names(first, STARTED) if t not in completed]
    subprocess.run(["ray", "stop", "--force"], check=False, capture_output=True)

    with second.open("w") as fh:
        resumed = subprocess.run(["dermclean", "sweep", "--resume", *common], stdout=fh, stderr=subprocess.STDOUT)
    if resumed.returncode:
        sys.exit(f"the resumed sweep failed (exit {resumed.returncode}); log: {second}")
    rerun = trial_names(second, COMPLETED)
    summary = json.loads((args.out / "summary.json").read_text())

    import mlflow

    mlflow.set_tracking_uri(summary["tracking_uri"])
    children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")
    trial_tags = [r.data.tags.get("ray_trial_id") for r in children]
    report = {
        "trials": summary["num_samples"],
        "completed_before_kill": len(completed),
        "in_flight_at_kill": in_flight,
        "never_started_at_kill": summary["num_samples"] - len(completed) - len(in_flight),
        "run_by_resumed_sweep": len(rerun),
        "in_flight_rerun": [t for t in in_flight if t in rerun],
        "in_flight_replaced": [t for t in in_flight if t not in rerun],
        "completed_trials_run_twice": [t for t in completed if t in rerun],
        "trials_lost": len(in_flight),
        "mlflow_child_runs": len(children),
        "mlflow_child_runs_distinct": len(set(trial_tags)),
        "resumed_timing": summary.get("timing"),
    }
    (args.logs / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = (not report["completed_trials_run_twice"] and len(rerun) == summary["num_samples"] - len(completed)
          and report["mlflow_child_runs"] == report["mlflow_child_runs_distinct"] == summary["num_samples"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

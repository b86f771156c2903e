#!/usr/bin/env python3
"""`meshguard fix` (dry run) against `meshguard check` over the benchmarks' 10,000-object repo, as a
team runs them in CI: the release binary, the native engine, wall time of whole runs, interleaved
so both see the same machine. Prints the medians and their ratio (the goal: fix within 2x of
check) and writes target/bench/fix-vs-check.json.

  scripts/fix-vs-check.py [--runs 10] [--meshguard PATH]
"""
import argparse, json, os, statistics, subprocess, tempfile, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--meshguard", default=os.path.join(ROOT, "target", "release", "meshguard"))
    args = ap.parse_args()
    if not os.path.exists(args.meshguard):
        subprocess.run(["cargo", "build", "--release", "-p", "host-runner"], cwd=ROOT, check=True)
    repo = tempfile.mkdtemp(prefix="meshguard-repo-")
    subprocess.run(["cargo", "run", "-q", "-p", "meshguard-benches", "--example", "write_repo", "--", repo],
                   cwd=ROOT, check=True)

    def run(command):
        started = time.perf_counter()
        done = subprocess.run([args.meshguard, command, "--engine", "native", repo],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        took = time.perf_counter() - started
        # check: 1 (the repo has findings); fix without --write: 1 (there is a diff).
        if done.returncode != 1:
            raise SystemExit(f"meshguard {command} exited {done.returncode}")
        return took

    run("check"), run("fix")  # warm the page cache
    check, fix = [], []
    for _ in range(args.runs):
        check.append(run("check"))
        fix.append(run("fix"))
    result = {"runs": args.runs, "check_median_s": statistics.median(check), "fix_median_s": statistics.median(fix)}
    result["ratio"] = result["fix_median_s"] / result["check_median_s"]
    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "bench", "fix-vs-check.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"check {result['check_median_s'] * 1000:.1f} ms, fix {result['fix_median_s'] * 1000:.1f} ms "
          f"(medians of {args.runs}): {result['ratio']:.2f}x")


if __name__ == "__main__":
    main()

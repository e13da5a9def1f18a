"""Benchmark: runbook.release.pg_backup against the raw commands it replaces, side by side in one run.

On a database of about 1 GB on the sandbox's PostgreSQL (`pgbench -i -s 70 --partitions=8` into the scratch database
bench_pg_backup, created only when missing because it takes a few minutes):
  (a) raw: `pg_dump -Fc` followed by `sha256sum` of the dump,
  (b) pg_backup, custom format (preflight, dump, `pg_restore --list` verification, sha256, manifest),
  (c) pg_backup, directory format with 2 jobs,
  (d) with --with-s3: pg_backup, custom format without compression (about 700 MB, so the upload is multipart),
      uploaded to the sandbox's S3 and read back; for the module's peak RSS with boto3 (its time is not comparable).
Each case runs --repeat times, interleaved, in alternating order; the ratios are given both from the fastest run of
each case and as the median of the per-round ratios (the machine is shared, so both, with the load average). The module runs as Ansible runs it (a
subprocess `python -m ...pg_backup args.json`), so its wall time includes the interpreter and its imports; its peak
RSS is read from /proc/<pid>/status (VmHWM, the module's own process) and from wait4's ru_maxrss (the module and
the client programs it waited for, whichever was largest).
Targets: (b)/(a) <= 1.10x, (c)/(a) < 1.0x, module peak RSS < 100 MB.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
HOME = Path(os.environ.get("RUNBOOK_SANDBOX_HOME", "/var/lib/runbook-sandbox"))
DB = "bench_pg_backup"
SCALE = 70
MODULE = "ansible_collections.runbook.release.plugins.modules.pg_backup"


def pg_env():
    password = (HOME / "secrets" / "postgres_password").read_text().strip()
    return dict(os.environ, PGHOST="127.0.0.1", PGPORT="55432", PGUSER="postgres", PGPASSWORD=password)


def psql(sql, database="postgres"):
    out = subprocess.run(["psql", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql], env=pg_env(), check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def pgbench():
    for candidate in (shutil.which("pgbench"), "/usr/lib/postgresql/15/bin/pgbench"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SystemExit("pgbench not found: install postgresql-contrib (Debian 12 ships it in postgresql-client-15)")


def ensure_database():
    """Create and fill bench_pg_backup unless a complete one is there (7,000,000 accounts)."""
    exists = psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % DB) == "1"
    if exists:
        try:
            if psql("SELECT count(*) FROM pgbench_accounts", DB) == str(SCALE * 100000):
                return 0.0
        except subprocess.CalledProcessError:
            pass
        psql("DROP DATABASE %s WITH (FORCE)" % DB)
    started = time.monotonic()
    print("creating %s with pgbench -i -s %d --partitions=8 (a few minutes)..." % (DB, SCALE), flush=True)
    psql("CREATE DATABASE %s" % DB)
    subprocess.run([pgbench(), "-i", "-q", "-s", str(SCALE), "--partitions=8", DB], env=pg_env(), check=True,
                   capture_output=True)
    return time.monotonic() - started


def watch_hwm(pid, box):
    """Poll the process's VmHWM (peak RSS, kB) until it exits."""
    path = "/proc/%d/status" % pid
    while True:
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        box["hwm_kb"] = max(box.get("hwm_kb", 0), int(line.split()[1]))
        except (OSError, ValueError):
            return
        time.sleep(0.02)


def run_module(workdir, dest, **args):
    module_args = dict({"login_host": "127.0.0.1", "login_port": 55432, "login_user": "postgres",
                        "login_password": pg_env()["PGPASSWORD"], "database": DB, "dest": str(dest)}, **args)
    args_file = workdir / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))
    env.pop("PGPASSWORD", None)
    started = time.monotonic()
    with open(workdir / "module.out", "w") as out:
        proc = subprocess.Popen([str(PYTHON), "-m", MODULE, str(args_file)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=workdir)
        box = {}
        watcher = threading.Thread(target=watch_hwm, args=(proc.pid, box), daemon=True)
        watcher.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    watcher.join(timeout=1)
    result = json.loads((workdir / "module.out").read_text())
    if result.get("failed"):
        raise SystemExit("pg_backup failed: %s" % result.get("msg"))
    return {"wall_s": wall, "module_hwm_mb": box.get("hwm_kb", 0) / 1024.0, "ru_maxrss_mb": usage.ru_maxrss / 1024.0,
            "size_bytes": result["size_bytes"], "objects": result["object_count"], "s3_uri": result["s3_uri"]}


def run_raw(dest):
    path = dest / "raw.dump"
    started = time.monotonic()
    subprocess.run(["pg_dump", "-Fc", "-f", str(path), DB], env=pg_env(), check=True)
    digest = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True).stdout.split()[0]
    wall = time.monotonic() - started
    return {"wall_s": wall, "size_bytes": path.stat().st_size, "sha256": digest}


def purge_s3(prefix):
    import boto3  # only for --with-s3
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", aws_access_key_id="sandbox",
                          aws_secret_access_key="sandbox-secret", region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="runbook-backups", Prefix=prefix).get("Contents") or []]
    if keys:
        client.delete_objects(Bucket="runbook-backups", Delete={"Objects": [{"Key": k} for k in keys]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--with-s3", action="store_true", help="also time an upload to the sandbox's S3")
    parser.add_argument("--workdir", default=os.environ.get("TMPDIR", "/var/tmp"))
    parser.add_argument("--max-load", type=float, help="wait up to 10 minutes for the 1-minute load average to drop "
                        "below this before starting (the machine is shared)")
    opts = parser.parse_args()
    deadline = time.monotonic() + 600
    while opts.max_load and os.getloadavg()[0] > opts.max_load and time.monotonic() < deadline:
        time.sleep(10)
    created_s = ensure_database()
    size = int(psql("SELECT pg_database_size('%s')" % DB))
    origin = ", created in %.0f s" % created_s if created_s else ", reused"
    print("database %s: %.2f GB (pg_database_size)%s" % (DB, size / 1e9, origin), flush=True)
    if size < 1e9:
        raise SystemExit("the benchmark needs at least 1 GB, %s has %d bytes" % (DB, size))
    workdir = Path(tempfile.mkdtemp(prefix="bench_pg_backup.", dir=opts.workdir))
    prefix = "bench-pg-backup-%d" % os.getpid()
    cases = {"(a) pg_dump -Fc + sha256sum": run_raw,
             "(b) pg_backup custom": lambda dest: run_module(workdir, dest),
             "(c) pg_backup directory jobs=2": lambda dest: run_module(workdir, dest, format="directory", jobs=2)}
    if opts.with_s3:
        cases["(d) pg_backup -Z0 + S3 multipart"] = lambda dest: run_module(
            workdir, dest, compression=0, s3_bucket="runbook-backups", s3_prefix=prefix,
            s3_endpoint_url="http://127.0.0.1:9000", aws_access_key="sandbox", aws_secret_key="sandbox-secret",
            s3_region="us-east-1")
    runs = {name: [] for name in cases}
    load_before = os.getloadavg()[0]
    try:
        for round_no in range(opts.repeat):
            order = list(cases.items())
            for name, case in (order if round_no % 2 == 0 else order[::-1]):
                dest = workdir / "dest"
                dest.mkdir()
                try:
                    runs[name].append(case(dest))
                finally:
                    shutil.rmtree(dest)
                print("round %d %-34s %7.2f s" % (round_no + 1, name, runs[name][-1]["wall_s"]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if opts.with_s3:
            purge_s3(prefix)
    best = {name: min(r, key=lambda x: x["wall_s"]) for name, r in runs.items()}
    raw = best["(a) pg_dump -Fc + sha256sum"]["wall_s"]
    print()
    print("%-34s %8s %8s %12s %14s %14s" % ("case", "wall_s", "ratio", "dump_MB", "module_rss_MB", "ru_maxrss_MB"))
    for name, res in best.items():
        print("%-34s %8.2f %7.2fx %12.1f %14s %14s" % (
            name, res["wall_s"], res["wall_s"] / raw, res["size_bytes"] / 1e6,
            "%.1f" % res["module_hwm_mb"] if "module_hwm_mb" in res else "-",
            "%.1f" % res["ru_maxrss_mb"] if "ru_maxrss_mb" in res else "-"))
    peak = max(r["module_hwm_mb"] for name, rs in runs.items() for r in rs if "module_hwm_mb" in r)
    raws = [r["wall_s"] for r in runs["(a) pg_dump -Fc + sha256sum"]]
    for name, target in (("(b) pg_backup custom", "<= 1.10x"), ("(c) pg_backup directory jobs=2", "< 1.0x")):
        paired = sorted(r["wall_s"] / a for r, a in zip(runs[name], raws))
        print("%s / raw: %.2fx fastest vs fastest, %.2fx median of %d rounds (target %s)"
              % (name[4:], best[name]["wall_s"] / raw, paired[len(paired) // 2], len(paired), target))
    print("pg_backup peak RSS of the module process: %.1f MB (target < 100 MB)" % peak)
    print("load average (1 min) before / after: %.2f / %.2f on %d CPUs" % (load_before, os.getloadavg()[0],
                                                                           os.cpu_count()))
    print(json.dumps({"database_bytes": size, "runs": runs}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

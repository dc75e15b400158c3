"""Ranks started on this machine without mlx.launch: the ring backend connects them, and signals and failures travel."""

import json
import os
import signal
import subprocess
import sys
import time

from optiq_runtime.local_ranks import free_ports, ring_hostfile

# A rank: joins the ring, says the all_sum of (rank + 1) over the group, then acts as argv[1] tells it.
RANK = """
import os, signal, sys, time
import mlx.core as mx

def stopped(signum, frame):
    print(f"stopped by signal {signum}", file=sys.stderr, flush=True)
    sys.exit(1 if rank == 0 else 0)

group = mx.distributed.init()
rank, mode = group.rank(), sys.argv[1]
total = mx.distributed.all_sum(mx.array([rank + 1]), stream=mx.cpu).item()
signal.signal(signal.SIGTERM, stopped)
if mode == "deaf":  # a rank that will not stop when told
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
try:  # the line below tells the test the rank is ready for signals
    print(f"rank {rank} of {group.size()}: sum {total}, pid {os.getpid()}", file=sys.stderr, flush=True)
    if rank == 0:
        print("table from rank 0", flush=True)
    if mode == "fail" and rank == 1:
        sys.exit(3)
    if mode in ("fail", "wait", "deaf"):
        time.sleep(120)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr, flush=True)
    sys.exit(130)
"""

LAUNCHER = (
    "import sys; from optiq_runtime.local_ranks import run_ranks; "
    "sys.exit(run_ranks(sys.argv[3:], int(sys.argv[1]), stop_grace_s=float(sys.argv[2])))"
)


def start(tmp_path, count, mode, stop_grace_s=20):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    argv = [sys.executable, "-c", LAUNCHER, str(count), str(stop_grace_s), sys.executable, str(script), mode]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rank_pids(stderr_lines):
    return [int(line.rsplit("pid ", 1)[1]) for line in stderr_lines if "pid " in line]


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_hostfile_lists_one_loopback_address_per_rank_on_distinct_free_ports():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    assert json.loads(ring_hostfile(ports)) == [[f"127.0.0.1:{p}"] for p in ports]


def test_three_ranks_join_one_ring_only_rank_0_prints_and_others_stderr_is_prefixed(tmp_path):
    launcher = start(tmp_path, 3, "done")
    stdout, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, stderr
    assert stdout == "table from rank 0\n"
    lines = sorted(line.split(", pid")[0] for line in stderr.splitlines())
    assert lines == ["rank 0 of 3: sum 6", "rank 1: rank 1 of 3: sum 6", "rank 2: rank 2 of 3: sum 6"]


def test_a_rank_that_fails_stops_the_others_and_rank_0s_status_is_the_launchers(tmp_path):
    launcher = start(tmp_path, 2, "fail")
    stdout, stderr = launcher.communicate(timeout=120)
    assert "rank 1 exited with status 3; stopping the other ranks" in stderr
    assert "stopped by signal 15" in stderr  # rank 0 got SIGTERM
    assert launcher.returncode == 1  # rank 0's own exit status


def wait_for_ranks(launcher, count):
    """The ranks' pids, once each has said it joined the ring (read from the launcher's stderr)."""
    lines = []
    while len(rank_pids(lines)) < count:
        line = launcher.stderr.readline()
        assert line, "the launcher ended before its ranks joined"
        lines.append(line)
    return rank_pids(lines)


def test_sigint_and_sigterm_sent_to_the_launcher_reach_every_rank(tmp_path):
    for signum, status, said in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 1, "stopped by signal 15")):
        launcher = start(tmp_path, 2, "wait")
        pids = wait_for_ranks(launcher, 2)
        launcher.send_signal(signum)
        stdout, stderr = launcher.communicate(timeout=60)
        assert launcher.returncode == status, stderr
        assert stderr.count(said) == 2 and "stopping the other ranks" not in stderr
        deadline = time.monotonic() + 10
        while not all(map(gone, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(map(gone, pids))


def test_ranks_that_ignore_the_stop_are_killed_once_the_grace_is_over(tmp_path):
    launcher = start(tmp_path, 2, "deaf", stop_grace_s=1)
    pids = wait_for_ranks(launcher, 2)
    launcher.send_signal(signal.SIGTERM)
    stdout, stderr = launcher.communicate(timeout=60)
    assert "ranks still running 1 s after the stop; killing them" in stderr
    assert launcher.returncode == 128 + signal.SIGKILL  # rank 0 was killed
    assert all(map(gone, pids))

#!/usr/bin/python3
"""bench/sample_cpu.py: CPU accounting of a benchmark run, sampled from /proc.

    sample_cpu.py --out FILE --interval-s S --postmaster PID --pid NAME=PID ...

Every S seconds until SIGTERM, one tab-separated line:

    epoch  total_jiffies  idle_jiffies  pg_ticks  NAME=ticks ...

total/idle are the machine's (/proc/stat "cpu" line, all CPUs; idle counts
iowait too). pg_ticks is the whole PostgreSQL cluster: the postmaster's own
utime+stime plus its reaped children's (cutime+cstime) plus every live
child's utime+stime (backends, walwriter, checkpointer, autovacuum). Each
NAME=PID is one process's utime+stime (0 once it is gone). All in clock
ticks (USER_HZ). The sampler's own CPU is in the total, not in any NAME.
"""
import argparse
import os
import signal
import time


def stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # Fields after "pid (comm) ": state ppid ... utime(12) stime(13)
    # cutime(14) cstime(15), counted from state = 1.
    return s[s.rindex(")") + 2:].split()


def ticks(pid, children=False):
    f = stat_fields(pid)
    if f is None:
        return 0
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t


def pg_ticks(postmaster):
    total = ticks(postmaster, children=True)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = stat_fields(d)
        if f is not None and f[1] == str(postmaster):
            total += int(f[11]) + int(f[12])
    return total


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is in user)
    return sum(v[:8]), v[3] + v[4]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval-s", type=float, default=0.1)
    ap.add_argument("--postmaster", type=int, required=True)
    ap.add_argument("--pid", action="append", default=[])
    a = ap.parse_args()
    procs = [p.split("=", 1) for p in a.pid]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with open(a.out, "w", buffering=1) as out:
        while True:
            total, idle = machine()
            fields = [f"{time.time():.3f}", str(total), str(idle),
                      str(pg_ticks(a.postmaster))]
            fields += [f"{n}={ticks(p)}" for n, p in procs]
            out.write("\t".join(fields) + "\n")
            if stop:
                break
            time.sleep(a.interval_s)


if __name__ == "__main__":
    main()

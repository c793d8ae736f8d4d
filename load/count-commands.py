#!/usr/bin/env python3
"""Redis commands per full login, from `redis-cli MONITOR` logs of every primary.

    count-commands.py --logins N [--summary FILE] PRIMARY.log...

The one place where both load/cluster-bench.sh and load/commands-per-login.sh count
(load/redis-topology.sh's monitor_start / monitor_stop make the logs). What counts:
- sent: every command a client sent to a primary; a script call (EVAL/EVALSHA) is one,
  as it is one round trip and one command for Redis to schedule;
- inside scripts: the commands a Lua script ran (`[0 lua]` lines), reported apart: they
  cost Redis time but no round trip;
- sandbox: commands on `sl:sbx:*` keys (the stand-in for WeChat's servers, which
  production does not have), sent or inside, reported apart and in neither figure above;
- not counted at all: PING (each node's once-a-second probe: time, not logins) and the
  lines of the clients named in PRIMARY.skip beside each log (the sentinels' links).
Each user's login cut off when the load tool's window closes sent some commands too and
is not in LOGINS: the figures are high by at most users/LOGINS of a login (8 users, 300
logins: under 3 %).

Prints the figures per login; --summary writes "sent inside sandbox" as printed (one
decimal), so that a report quotes exactly the printed numbers.
"""
import argparse
import collections
import os
import re

LINE = re.compile(r'^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$')
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
SCRIPT_CALLS = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}


def family(cmd, args):
    """The key family of a command: `sl:` and the next part of its first key (`sl:a`
    for `sl:a:{b}…`), or "" for a command without a key (WAIT, SCRIPT LOAD, …)."""
    if cmd in SCRIPT_CALLS:
        try:
            keys = args[2:2 + int(args[1])]
        except (IndexError, ValueError):
            keys = []
    else:
        keys = args
    for k in keys:
        m = re.match(r'(sl:[^:{]+)', k)
        if m:
            return m.group(1)
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--logins", type=int, required=True)
    ap.add_argument("--summary")
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()
    sent, inside, sandbox = collections.Counter(), collections.Counter(), collections.Counter()
    pings = skipped = 0
    for log in a.logs:
        skip_file = os.path.splitext(log)[0] + ".skip"
        skip = set(open(skip_file).read().split()) if os.path.exists(skip_file) else set()
        for line in open(log, errors="replace"):
            m = LINE.match(line)
            if not m:
                continue  # MONITOR's own "OK"
            client, args = m.group(1), ARG.findall(m.group(2))
            if not args:
                continue
            cmd = args[0].upper()
            if cmd == "PING":
                pings += 1
                continue
            if client in skip:
                skipped += 1
                continue
            fam = family(cmd, args[1:])
            label = f"{cmd} {fam}".strip()
            if fam == "sl:sbx":
                sandbox[label + (" (inside scripts)" if client == "lua" else "")] += 1
            elif client == "lua":
                inside[label] += 1
            else:
                sent[label] += 1
    n = max(a.logins, 1)
    per = lambda c: f"{sum(c.values()) / n:.1f}"
    figures = (per(sent), per(inside), per(sandbox))
    print(f"Redis commands per full login ({a.logins} logins, MONITOR on {len(a.logs)} primaries):")
    print(f"  sent by scanlogin     {figures[0]:>6}   (a script call counts one)")
    print(f"  inside scripts        {figures[1]:>6}   (run by Redis, no round trip)")
    print(f"  sandbox (sl:sbx:*)    {figures[2]:>6}   (WeChat's stand-in; in neither figure above)")
    print(f"  not counted: {pings} PING (per-second probes), {skipped} from the sentinels")
    for title, c in (("sent", sent), ("inside scripts", inside), ("sandbox", sandbox)):
        if c:
            print(f"  per login, {title}:")
            for label, k in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"    {k / n:7.2f}  {label}")
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(" ".join(figures) + "\n")


if __name__ == "__main__":
    main()

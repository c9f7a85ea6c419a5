#!/bin/bash
# Where a message's time goes at one session: tcpdump on lo while
# smtp-source sends 200 messages, a connection each, through relay-in to
# smtp-sink; then the median time of each step on the client's connection
# and the backend packets between the client's final dot and its 250.
# As root, from a directory holding `cfg` as for relay-in-ab.sh:
#   unshare --net -- relay-in-timeline.sh RELAY_IN
set -u
BIN=$1
HERE=$(pwd)
ip link set lo up
smtp-sink -u nobody -c 127.0.0.1:2526 1000 >/dev/null 2>&1 &
SINK=$!
sleep 0.3
"$BIN" -c "$HERE/cfg" >"$HERE/relay-in.log" 2>&1 &
RI=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done
S="smtp-source -l 2048 -f a@x.test -t u@example.com"
$S -s 1 -m 300 127.0.0.1:2525
tcpdump -i lo -n -tt -s 128 -w "$HERE/lo.pcap" 2>/dev/null &
T=$!
sleep 1
$S -s 1 -m 200 127.0.0.1:2525
sleep 0.3
kill $T $RI $SINK; wait $T
tcpdump -r "$HERE/lo.pcap" -n -tt 2>/dev/null | python3 -c '
import re, statistics, sys
ev = []
for l in sys.stdin:
    m = re.match(r"(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): Flags \[([^\]]*)\].*length (\d+)", l)
    if m:
        ev.append((float(m[1]), int(m[2]), int(m[3]), m[4], int(m[5])))
conns, starts = {}, []
for t, s, d, fl, ln in ev:
    if d == 2525 and fl == "S":
        conns[s] = [("SYN", t)]; starts.append(t)
    elif d == 2525 and s in conns and ln:
        conns[s].append(("C%d" % ln, t))
    elif s == 2525 and d in conns and ln:
        conns[d].append(("S%d" % ln, t))
gaps = [(b - a) * 1e6 for a, b in zip(starts, starts[1:])]
print("per message: median %.0f us (%d messages)" % (statistics.median(gaps), len(gaps)))
steps = {}
for evs in conns.values():
    for (a, ta), (b, tb) in zip(evs, evs[1:]):
        steps.setdefault(a + " -> " + b, []).append((tb - ta) * 1e6)
for k, v in steps.items():
    if len(v) > len(gaps) // 2:
        print("  %-16s median %4.0f us" % (k, statistics.median(v)))
'

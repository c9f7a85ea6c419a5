#!/bin/bash
# CPU per message of every process, smtp-sink alone and through relay-in,
# smtp-source with 20 sessions and a connection per message (the headline's
# 20-session row): shows whether relay-in costs what the sink and the load
# generator cost, and what the peers pay extra for the second hop.
# As root, from a directory holding `cfg` (as for relay-in-ab.sh):
#   unshare --net -- relay-in-cpu.sh RELAY_IN [MESSAGES]
# Prints, per round, msg/s and user/system µs per message of each process.
set -u
BIN=$1; M=${2:-20000}
HERE=$(pwd)
ip link set lo up
smtp-sink -u nobody -c 127.0.0.1:2526 1000 >/dev/null 2>&1 & SINK=$!
smtp-sink -u nobody 127.0.0.1:2527 1000 >/dev/null 2>&1 & ALONE=$!
sleep 0.3
"$BIN" -c "$HERE/cfg" >"$HERE/relay-in.log" 2>&1 & RI=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done
S="smtp-source -l 2048 -f a@x.test -t u@example.com -s 20"
$S -m 1000 127.0.0.1:2525
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
per_msg() { echo "($2-$1)*10000/$M" | bc; }
secs_per_msg() { echo "$1*1000000/$M" | bc; }
for _ in 1 2 3; do
  read -r a0 b0 < <(ticks $ALONE); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$HERE/time.out" $S -m "$M" 127.0.0.1:2527; t1=$(date +%s.%N)
  read -r a1 b1 < <(ticks $ALONE); read -r su ss < "$HERE/time.out"
  echo "sink alone $(echo "$M/($t1-$t0)" | bc) msg/s: smtp-source $(secs_per_msg "$su")/$(secs_per_msg "$ss"), smtp-sink $(per_msg "$a0" "$a1")/$(per_msg "$b0" "$b1") µs user/sys per message"
  read -r a0 b0 < <(ticks $SINK); read -r c0 d0 < <(ticks $RI); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$HERE/time.out" $S -m "$M" 127.0.0.1:2525; t1=$(date +%s.%N)
  read -r a1 b1 < <(ticks $SINK); read -r c1 d1 < <(ticks $RI); read -r su ss < "$HERE/time.out"
  echo "relay-in   $(echo "$M/($t1-$t0)" | bc) msg/s: smtp-source $(secs_per_msg "$su")/$(secs_per_msg "$ss"), relay-in $(per_msg "$c0" "$c1")/$(per_msg "$d0" "$d1"), smtp-sink $(per_msg "$a0" "$a1")/$(per_msg "$b0" "$b1") µs user/sys per message"
done
kill $RI $SINK $ALONE

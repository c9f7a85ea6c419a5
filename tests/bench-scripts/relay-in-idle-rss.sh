#!/bin/bash
# relay-in's idle RSS, several fresh starts of each build, interleaved: the
# figure swings with where the binary's file sits in the page cache (a fresh
# copy maps more pages around each fault than one read back from disk), so
# compare builds side by side, and after `echo 3 > /proc/sys/vm/drop_caches`.
# As root, from a directory holding `cfg` as for relay-in-ab.sh:
#   unshare --net -- relay-in-idle-rss.sh RELAY_IN_A [RELAY_IN_B ...]
# Prints one line per round: each build's RSS in kB 1.5 s after its start.
# N=rounds (default 8).
set -u
HERE=$(pwd)
ip link set lo up
smtp-sink -u nobody 127.0.0.1:2526 100 >/dev/null 2>&1 &
SINK=$!
sleep 0.3
for _ in $(seq "${N:-8}"); do
  line=""
  for b in "$@"; do
    "$b" -c "$HERE/cfg" >"$HERE/relay-in.log" 2>&1 &
    RI=$!
    sleep 1.5
    line="$line $(basename "$b")=$(awk '/^Rss/{print $2}' "/proc/$RI/smaps_rollup")"
    kill $RI; wait $RI 2>/dev/null
  done
  echo "$line"
done
kill $SINK

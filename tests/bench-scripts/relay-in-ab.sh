#!/bin/bash
# relay-in builds side by side under smtp-source, interleaved with smtp-sink
# alone, for quick A/B comparisons (the headline scenario is the reference).
# As root, from a directory holding `cfg` (config-in/ with smtp.ini
# "listen=127.0.0.1:2525" and "rdns=off", smtp_forward.ini host=127.0.0.1
# port=2526, me, host_list example.com, a tls.ini with a self-signed pair):
#   unshare --net -- relay-in-ab.sh "-s 1 -m 4000" RELAY_IN_A RELAY_IN_B ...
# Prints one line per round: smtp-sink alone msg/s, then each build's msg/s
# and its ratio to the sink alone of that round. ROUNDS=N for other than 4.
set -u
MODE=$1; shift
HERE=$(pwd)
ip link set lo up
smtp-sink -u nobody -c 127.0.0.1:2526 1000 >/dev/null 2>&1 &
smtp-sink -u nobody 127.0.0.1:2527 1000 >/dev/null 2>&1 &
sleep 0.3
S="smtp-source -l 2048 -f a@x.test -t u@example.com"
m=${MODE##*-m }
now() { date +%s.%N; }
for _ in $(seq "${ROUNDS:-4}"); do
  t0=$(now); $S $MODE 127.0.0.1:2527; t1=$(now)
  line="sink $(echo "$m/($t1-$t0)" | bc)"
  for b in "$@"; do
    "$b" -c "$HERE/cfg" >"$HERE/relay-in.log" 2>&1 &
    RI=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done
    $S -s 20 -m 500 127.0.0.1:2525
    t2=$(now); $S $MODE 127.0.0.1:2525; t3=$(now)
    line="$line | $(basename "$b") $(echo "$m/($t3-$t2)" | bc) ($(echo "scale=2; ($t1-$t0)/($t3-$t2)" | bc))"
    kill $RI; wait $RI 2>/dev/null
  done
  echo "$line"
done
kill %1 %2

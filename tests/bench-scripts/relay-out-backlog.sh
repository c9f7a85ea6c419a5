#!/bin/bash
# relay-out's memory and drain time for a backlog (issue 19 point 4; see
# BENCHMARKS.md "relay-out backlog memory"). As root, from anywhere:
#
#   relay-out-backlog.sh BINARY MESSAGES live|restart
#
# Fills relay-out's queue with MESSAGES 2 KB messages from Postfix's
# smtp-source (20 sessions) while delivery is disabled, then releases it to
# Postfix's smtp-sink on loopback through a [*] route:
#   live:    delivery enabled + SIGHUP in the same process;
#   restart: relay-out stopped, started again with delivery on (the startup
#            scan of the whole queue is part of the measurement).
# Prints relay-out's peak RSS (VmHWM) after the fill and at the end, and the
# drain time (until smtp-sink has counted them all, polled every 0.25 s). Runs in a private network and mount
# namespace, with the queue on a 2 GB tmpfs that disappears with it.
set -u
if [ -z "${BACKLOG_INSIDE:-}" ]; then
  exec unshare --net --mount -- env BACKLOG_INSIDE=1 bash -c \
    'ip link set lo up && mkdir -p /tmp/postern-backlog && mount -t tmpfs -o size=2g tmpfs /tmp/postern-backlog && exec "$0" "$@"' \
    "$(readlink -f "$0")" "$@"
fi
exec 2>&1
BIN=$1; N=$2; MODE=$3
Q=/tmp/postern-backlog
CFG=$Q/config
rm -rf $Q/config $Q/queue; mkdir -p $CFG
RPORT=2525; SPORT=2600
cat > $CFG/smtp.ini <<E2
listen=127.0.0.1:$RPORT
rdns=off
E2
echo relay.test > $CFG/me
echo 127.0.0.0/8 > $CFG/relay_acl_allow
printf '[*]\nhosts = 127.0.0.1:%s\ntls = off\n' $SPORT > $CFG/outbound_routes.ini
printf 'queue_dir=%s/queue\nnameservers=127.0.0.1:9\n' $Q > $CFG/outbound.base
{ cat $CFG/outbound.base; echo disabled=true; } > $CFG/outbound.ini
$BIN --config $CFG > $Q/relay.log 2>&1 &
PID=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$RPORT) 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s.%N)
/usr/sbin/smtp-source -s 20 -m $N -l 2048 -f a@origin.test -t b@example.com 127.0.0.1:$RPORT
t1=$(date +%s.%N)
# Messages in the queue: .json envelopes (old layout) and .msg files whose
# first byte is not zero (a spare's is).
count() { python3 -c '
import os, sys
d = sys.argv[1]; n = 0
for name in os.listdir(d):
    if name.endswith(".json"):
        n += 1
    elif name.endswith(".msg"):
        try:
            with open(os.path.join(d, name), "rb") as f:
                n += f.read(1) not in (b"\0", b"")
        except FileNotFoundError:
            pass
print(n)' $Q/queue; }
# What smtp-sink -c has counted so far (cheap enough to poll).
at_sink() { tr '\r' '\n' < $Q/sink.log | grep -o '[0-9][0-9]*' | tail -1; }
echo "filled: $(count) envelopes in $(echo "$t1 - $t0" | bc) s; relay VmHWM after fill: $(grep VmHWM /proc/$PID/status)"
if [ "$MODE" = restart ]; then
  kill -TERM $PID; wait $PID
  cp $CFG/outbound.base $CFG/outbound.ini
  /usr/sbin/smtp-sink -u nobody -c 127.0.0.1:$SPORT 1000 > $Q/sink.log 2>&1 &
  SINK=$!
  sleep 0.3
  t0=$(date +%s.%N)
  $BIN --config $CFG >> $Q/relay.log 2>&1 &
  PID=$!
else
  /usr/sbin/smtp-sink -u nobody -c 127.0.0.1:$SPORT 1000 > $Q/sink.log 2>&1 &
  SINK=$!
  sleep 0.3
  cp $CFG/outbound.base $CFG/outbound.ini
  t0=$(date +%s.%N)
  kill -HUP $PID
fi

for i in $(seq ${POLLS:-2400}); do
  [ "$(at_sink)" -ge "$N" ] 2>/dev/null && break
  sleep 0.25
done
t1=$(date +%s.%N)
echo "drained: $(at_sink) at the sink, left $(count) in $(echo "$t1 - $t0" | bc) s; relay $(grep VmHWM /proc/$PID/status) $(grep VmRSS /proc/$PID/status)"
kill -TERM $PID; wait $PID
kill $SINK; wait $SINK 2>/dev/null
echo "relay log: $(grep -c 'message done' $Q/relay.log) 'message done' lines, $(grep -ci 'panic' $Q/relay.log) panics, $(grep -c ' ERROR ' $Q/relay.log) errors"
grep ' ERROR \|panic' $Q/relay.log | head -3

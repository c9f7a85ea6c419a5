#!/bin/bash
# relay-out's drain of a backlog, alone against Postfix's smtp-sink, with the
# queue on a journaled ext4 image (BENCHMARKS.md, "relay-out drain: session
# reuse"). As root:
#
#   unshare --net --mount --propagation private -- \
#     relay-out-drain.sh BINARY MESSAGES LABEL [trace]
#
# Fills the queue with MESSAGES 2 KB messages from smtp-source (20 sessions)
# while the MX is down (each delivery fails once and leaves a .state, as in
# `postern-bench scenario relay-out-compare`'s drain; MODE=disabled queues
# with outbound.ini disabled=true instead), starts smtp-sink, sends SIGHUP
# and waits until the queue is empty. With `trace`, strace -c -f counts
# relay-out's system calls over the drain alone into /tmp/rodrain/LABEL.strace.
# Files go under /tmp/rodrain (the image is removed at the end).
set -u
mkdir -p /tmp/rodrain
exec 2>&1
BIN=$1; N=$2; LABEL=$3; TRACE=${4:-}
ip link set lo up
Q=/tmp/rodrain/mnt-$LABEL
mkdir -p $Q
truncate -s 1G /tmp/rodrain/img-$LABEL; mkfs.ext4 -q -F /tmp/rodrain/img-$LABEL; mount -o loop /tmp/rodrain/img-$LABEL $Q
CFG=$Q/config; mkdir -p $CFG
RPORT=2525; SPORT=2600
printf 'listen=127.0.0.1:%s\nrdns=off\n' $RPORT > $CFG/smtp.ini
echo relay.test > $CFG/me
echo 127.0.0.0/8 > $CFG/relay_acl_allow
printf '[*]\nhosts = 127.0.0.1:%s\ntls = off\n' $SPORT > $CFG/outbound_routes.ini
printf 'queue_dir=%s/queue\nnameservers=127.0.0.1:9\n' $Q > $CFG/outbound.base
if [ "${MODE:-down}" = disabled ]; then { cat $CFG/outbound.base; echo disabled=true; } > $CFG/outbound.ini; else cp $CFG/outbound.base $CFG/outbound.ini; fi
$BIN --config $CFG > $Q/relay.log 2>&1 &
PID=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$RPORT) 2>/dev/null && break; sleep 0.1; done
/usr/sbin/smtp-source -s 20 -m $N -l 2048 -f a@origin.test -t b@example.com 127.0.0.1:$RPORT
count() { ls $Q/queue | grep -cE '\.(msg|json)$'; }
# deliveries of a down MX are deferred; wait until every message has its .state
for i in $(seq 600); do [ "${MODE:-down}" = disabled ] && break; [ "$(ls $Q/queue | grep -c '\.state$')" -ge $N ] && break; sleep 0.1; done
echo "filled: $(count) ($(ls $Q/queue | grep -c '\.state$') with a state)"
/usr/sbin/smtp-sink -u nobody -c 127.0.0.1:$SPORT 1000 > $Q/sink.log 2>&1 &
SINK=$!
sleep 0.3
if [ -n "$TRACE" ]; then
  strace -f -c -o /tmp/rodrain/$LABEL.strace -p $PID & ST=$!
  sleep 1
fi
cp $CFG/outbound.base $CFG/outbound.ini
t0=$(date +%s.%N)
kill -HUP $PID
for i in $(seq 2400); do
  c=$(count); [ "$c" -eq 0 ] && break; sleep 0.1
done
t1=$(date +%s.%N)
[ -n "$TRACE" ] && { kill -INT $ST; wait $ST; }
echo "$LABEL drained: left $(count) in $(echo "$t1 - $t0" | bc) s; rate $(echo "$N / ($t1 - $t0)" | bc) msg/s; $(grep VmHWM /proc/$PID/status)"
kill -TERM $PID; wait $PID
kill $SINK; wait $SINK 2>/dev/null
echo "relay log: $(grep -c 'delivered' $Q/relay.log) delivered lines, $(grep -ci 'panic' $Q/relay.log) panics, $(grep -c ' ERROR ' $Q/relay.log) errors"
tail -c 300 $Q/sink.log; echo
cp $Q/relay.log /tmp/rodrain/$LABEL.relay.log
umount $Q; rm -f /tmp/rodrain/img-$LABEL

#!/bin/bash
# relay-out's intake and end-to-end rate, queue on a journaled ext4 image.
# As root, from a directory holding `cfg` (config-out/ with smtp.ini
# listen=127.0.0.1:2525, outbound.ini enable_tls=false and
# queue_dir=/mnt/sb/queue, outbound_routes.ini "[*] hosts = 127.0.0.1:2526
# tls = off", relay_acl_allow 127.0.0.1/32, no tls.ini):
#   unshare --net --mount --propagation private -- spool-intake.sh RELAY_OUT SESSIONS MESSAGES [SIZE] [STRACE_OUT]
# With STRACE_OUT, relay-out runs under `strace -f -c` (counts, not rates).
set -u
BIN=$1 S=$2 M=$3 L=${4:-2048} TRACE=${5:-}
HERE=$(pwd)
ip link set lo up
mkdir -p /mnt/sb
truncate -s 2G "$HERE/img" && mkfs.ext4 -q -F "$HERE/img" && mount -o loop "$HERE/img" /mnt/sb && mkdir /mnt/sb/queue
smtp-sink -u nobody 127.0.0.1:2526 256 &
SINK=$!
if [ -n "$TRACE" ]; then
  strace -f -c -o "$TRACE" -e trace=fsync,fdatasync,syncfs,openat,rename,unlink,pread64,pwrite64,write "$BIN" -c "$HERE/cfg" >"$HERE/relay-out.log" 2>&1 &
else
  "$BIN" -c "$HERE/cfg" >"$HERE/relay-out.log" 2>&1 &
fi
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done
# Messages in the queue: .msg files whose first byte is not zero (not spares).
queued() { python3 -c '
import os, sys
d = sys.argv[1]; n = 0
for name in os.listdir(d):
    if name.endswith(".msg"):
        try:
            with open(os.path.join(d, name), "rb") as f:
                n += f.read(1) not in (b"\0", b"")
        except FileNotFoundError:
            pass
print(n)' /mnt/sb/queue; }
t0=$(date +%s.%N)
smtp-source -s "$S" -m "$M" -l "$L" -f a@src.test -t b@dst.test 127.0.0.1:2525
t1=$(date +%s.%N)
for _ in $(seq 1 1200); do [ "$(queued)" = 0 ] && break; sleep 0.05; done
t2=$(date +%s.%N)
echo "$(basename "$BIN") sessions=$S messages=$M size=$L intake $(echo "$M/($t1-$t0)" | bc -l | cut -c1-7) msg/s, end to end $(echo "$M/($t2-$t0)" | bc -l | cut -c1-7) msg/s"
pkill -TERM -f "^$BIN -c $HERE/cfg"
sleep 2
kill "$SINK"
umount /mnt/sb
rm -f "$HERE/img"

#!/usr/bin/env python3
"""What one intake's file-system work costs, each way the spool could do it.

Run as root inside `unshare --mount --propagation private` with a journaled
ext4 image mounted at DIR (see BENCHMARKS.md, "Spare message files"):
    truncate -s 1G img; mkfs.ext4 -q -F img; mount -o loop img /mnt/fsx
    python3 fsync-costs.py /mnt/fsx
Prints microseconds per operation, 500 operations of a 2.5 KB file each.
"""
import os
import sys
import time

DIR = sys.argv[1]
COUNT = 500
DATA = b"x" * 2500
DIR_FD = os.open(DIR, os.O_RDONLY)


def temp_then_rename(i):
    temp = f"{DIR}/tmp.{i}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, DATA)
    os.fsync(fd)
    os.close(fd)
    os.rename(temp, f"{DIR}/m{i}.msg")
    os.fsync(DIR_FD)


def final_name(i):
    fd = os.open(f"{DIR}/p{i}.msg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, DATA)
    os.fsync(fd)
    os.close(fd)
    os.fsync(DIR_FD)


def make_spares():
    for i in range(COUNT):
        fd = os.open(f"{DIR}/s{i}.msg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"\0" * 16384)
        os.close(fd)
    os.sync()


def into_spare(i):
    fd = os.open(f"{DIR}/s{i}.msg", os.O_WRONLY)
    os.pwrite(fd, DATA, 0)
    os.fdatasync(fd)
    os.close(fd)


def removal(i):
    os.unlink(f"{DIR}/m{i}.msg")
    os.fsync(DIR_FD)


def timed(name, step):
    start = time.time()
    for i in range(COUNT):
        step(i)
    print(f"{name}: {(time.time() - start) / COUNT * 1e6:.0f} us")


timed("temp, fsync, rename, fsync(dir)", temp_then_rename)
timed("final name, fsync, fsync(dir)", final_name)
make_spares()
timed("into a spare, fdatasync", into_spare)
timed("unlink, fsync(dir)", removal)

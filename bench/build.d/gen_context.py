#!/usr/bin/env python3
"""Generates the build contexts bench/build needs, once per run.

    gen_context.py KIND DIR [BIG_MB]

KIND is one of:
  big         DIR/data/: BIG_MB MiB in many files of varied sizes (log-uniform
              from 200 B to 16 MiB, plus ~1500 small source-like files),
              nested three levels deep; about half the bytes are
              incompressible (random), half are word-like text that gzip
              shrinks about threefold, roughly what a real asset or vendor
              tree looks like.
  configapp   DIR/conf/, DIR/app/ (a few hundred small .py files), DIR/bin/start
  multistage  DIR/src/: 30 .c files and 10 .h files of text
  manylayers  DIR/files/: the small files the Dockerfile COPYs one by one

Structure and text are drawn from a fixed seed; the random bytes come from
os.urandom, so contents differ between runs but are identical for every
builder within a run (the context is generated once).
"""

import math
import os
import random
import sys

WORDS = (
    "alpha beta gamma delta kernel layer image build cache digest manifest "
    "blob config tar gzip overlay mount registry push pull stage copy run "
    "env label user workdir volume expose entrypoint shell health arg from "
    "module package vendor asset index static bundle chunk source target "
    "release debug test lint format check deploy service worker queue"
).split()

MiB = 1024 * 1024


def text_pool(rng, size):
    """Word-like text; slices of it serve as file contents (gzip's window is
    32 KiB, so reusing the pool costs nothing in realism)."""
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line += " %d\n" % rng.randint(0, 1 << 20)
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def text_slice(rng, pool, size):
    chunks = []
    while size > 0:
        take = min(size, len(pool) // 2)
        start = rng.randrange(0, len(pool) - take)
        chunks.append(pool[start : start + take])
        size -= take
    return b"".join(chunks)


def gen_big(dest, big_mb):
    rng = random.Random(20240501)
    pool = text_pool(rng, 8 * MiB)
    target = big_mb * MiB
    total = 0
    n = 0

    def path_for(i, ext):
        return os.path.join(
            dest, "data", "pkg%02d" % (i % 17), "mod%02d" % ((i // 17) % 13), "f%05d%s" % (i, ext)
        )

    # small source-like files first (about 1% of the bytes)
    for _ in range(1500):
        size = int(math.exp(rng.uniform(math.log(200), math.log(16 * 1024))))
        write(path_for(n, ".txt"), text_slice(rng, pool, size))
        total += size
        n += 1
    # then files of every size up to 16 MiB, alternating random and text
    while total < target:
        size = int(math.exp(rng.uniform(math.log(200), math.log(16 * MiB))))
        size = min(size, target - total) if target - total > 200 else size
        if n % 2:
            write(path_for(n, ".bin"), os.urandom(size))
        else:
            write(path_for(n, ".dat"), text_slice(rng, pool, size))
        total += size
        n += 1
    print("%d files, %d bytes" % (n, total))


def gen_configapp(dest):
    rng = random.Random(7)
    pool = text_pool(rng, 256 * 1024)
    for i in range(12):
        write(os.path.join(dest, "conf", "app%02d.conf" % i), text_slice(rng, pool, 300 + 100 * i))
    for i in range(300):
        sub = "pkg%d/sub%d" % (i % 6, i % 4)
        write(os.path.join(dest, "app", sub, "mod%03d.py" % i), text_slice(rng, pool, rng.randint(500, 12000)))
    write(
        os.path.join(dest, "bin", "start"),
        b"#!/bin/sh\necho \"starting $APP_ENV on $APP_PORT\"\nexec \"$@\"\n",
    )
    write(os.path.join(dest, "bin", "healthcheck"), b"#!/bin/sh\nexit 0\n")


def gen_multistage(dest):
    rng = random.Random(11)
    pool = text_pool(rng, 512 * 1024)
    for i in range(30):
        write(os.path.join(dest, "src", "unit%02d.c" % i), text_slice(rng, pool, rng.randint(8000, 40000)))
    for i in range(10):
        write(os.path.join(dest, "src", "unit%02d.h" % i), text_slice(rng, pool, rng.randint(500, 3000)))


def gen_manylayers(dest):
    rng = random.Random(13)
    pool = text_pool(rng, 128 * 1024)
    for i in range(3, 31, 3):
        write(os.path.join(dest, "files", "f%d.txt" % i), text_slice(rng, pool, 1000 * i))


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: gen_context.py big|configapp|multistage|manylayers DIR [BIG_MB]")
    kind, dest = sys.argv[1], sys.argv[2]
    if kind == "big":
        if len(sys.argv) != 4:
            sys.exit("gen_context.py big DIR BIG_MB")
        gen_big(dest, int(sys.argv[3]))
    elif kind == "configapp":
        gen_configapp(dest)
    elif kind == "multistage":
        gen_multistage(dest)
    elif kind == "manylayers":
        gen_manylayers(dest)
    else:
        sys.exit("unknown kind %r" % kind)


if __name__ == "__main__":
    main()

"""Client-side load for the benchmarks that wrk cannot do; always its own process.

    open:  open-loop arrivals at a fixed rate for a fixed time (the quota test), turn by turn to
           each --url given (replicas); one JSON line with every request's [start, end, status,
           retry-after, first byte, replica] out (seconds from the test's start; first byte: the
           head of a JSON answer, the first event of a stream; replica: the --url's index).
           With --stream the requests ask for SSE streams, each read to `data: [DONE]`: a stream
           counts as delivered (status 200) only when complete; one that ends without [DONE] or
           carries an error event is status -3.
    ttfb:  sequential streaming requests, time to the first SSE event and to the end.

Bounded: `open` stops sending at --seconds and waits at most --timeout for the rest; `ttfb`
sends exactly --count requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


def body(stream: bool, temperature: float) -> bytes:
    return json.dumps(
        {
            "model": "fake-small",
            "messages": [{"role": "user", "content": "how many rows in t250?"}],
            "max_tokens": 32,
            "temperature": temperature,
            "stream": stream,
        }
    ).encode()


INCOMPLETE = -3  # a stream that ended without [DONE] or carried an error event


async def read_stream(resp: aiohttp.ClientResponse) -> bool:
    """Read an SSE answer to its end; True when it ended with `data: [DONE]` and no error event."""
    done, ok = False, True
    async for line in resp.content:
        if line.startswith(b"data: [DONE]"):
            done = True
        elif line.startswith(b"data: ") and b'"error"' in line[:40]:
            ok = False
    return done and ok


async def open_loop(args: argparse.Namespace) -> dict:
    headers = {"Authorization": args.auth, "Content-Type": "application/json"}
    data = body(args.stream, 0.7)
    results: list[tuple[float, float, int, str, float, int]] = []
    tmo = aiohttp.ClientTimeout(total=args.timeout)

    async def one(sess: aiohttp.ClientSession, t_start: float, i: int) -> None:
        t = time.monotonic()
        first = -1.0
        replica = i % len(args.url)  # which --url (replica) the request went to
        try:
            url = args.url[replica]
            async with sess.post(url, data=data, headers=headers, timeout=tmo) as resp:
                status = resp.status
                if args.stream and status == 200:
                    await resp.content.readuntil(b"\n\n")  # the first event
                    first = time.monotonic() - t_start
                    if not await read_stream(resp):
                        status = INCOMPLETE
                else:
                    first = time.monotonic() - t_start
                    await resp.read()
                results.append(
                    (
                        t - t_start,
                        time.monotonic() - t_start,
                        status,
                        resp.headers.get("Retry-After", ""),
                        first,
                        replica,
                    )
                )
        except asyncio.TimeoutError:
            results.append((t - t_start, time.monotonic() - t_start, -1, "", first, replica))
        except aiohttp.ClientError:
            results.append((t - t_start, time.monotonic() - t_start, -2, "", first, replica))

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as sess:
        t0 = time.monotonic()
        tasks = []
        n = int(args.rate * args.seconds)
        for i in range(n):  # arrivals on a fixed schedule, whatever the answers do
            due = t0 + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(sess, t0, i)))
        await asyncio.wait(tasks, timeout=args.timeout + 5)
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "sent": n,
        "stream": args.stream,
        "results": results,
    }


async def ttfb(args: argparse.Namespace) -> dict:
    headers = {"Authorization": args.auth, "Content-Type": "application/json"}
    data = body(True, 0.7)
    first, total, bad = [], [], 0
    tmo = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession() as sess:
        for i in range(args.count + args.warmup):
            t = time.perf_counter()
            async with sess.post(args.url[0], data=data, headers=headers, timeout=tmo) as resp:
                if resp.status != 200:
                    bad += 1
                    await resp.read()
                    continue
                await resp.content.readuntil(b"\n\n")  # the first SSE event
                t1 = time.perf_counter()
                await resp.read()
                t2 = time.perf_counter()
            if i >= args.warmup:
                first.append(t1 - t)
                total.append(t2 - t)
    return {"ttfb": first, "total": total, "errors": bad}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["open", "ttfb"])
    ap.add_argument("--url", required=True, action="append", help="repeat: turn by turn")
    ap.add_argument("--auth", default="")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument(
        "--stream", action="store_true", help="open: ask for streams, read each to [DONE]"
    )
    args = ap.parse_args()
    out = asyncio.run(open_loop(args) if args.mode == "open" else ttfb(args))
    sys.stdout.write("LOADJSON " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()

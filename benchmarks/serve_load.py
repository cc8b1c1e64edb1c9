"""`fashion-tcn serve` under load, on loopback, against the in-process `Predictor`.

    python benchmarks/serve_load.py RUN_DIR [--clients 1,8,32] [--seconds 10] [--streams 1,32]

Starts `fashion-tcn serve RUN_DIR` as its own process on a free loopback port (so the clients do
not share its interpreter), then for each client count, interleaved:
- **in-process**: `Predictor.probabilities` on batches of that many test-like images, the best a
  server that batched perfectly could do, images/s;
- **served**: that many clients, each POSTing one image (.npy) at a time and waiting for the
  answer, for `--seconds`: images/s, p50/p99 latency, errors (any non-200) and dropped requests
  (sent without an answer when time was up).
Then WebSocket streaming: `--streams` clients at once, each sending the 28 rows (784 pixels) of an
image one step per message and starting again, steps/s in all. Bounded in count and time.
`--screenshot PNG`: last, the page in headless Chromium after streaming the first of the model's
mistakes in the gallery (docs/images/serve.png).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import websockets

from fashion_tcn.predict import Predictor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run_dir: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "fashion_tcn.cli", "serve", str(run_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()  # "serving ... at http://...": loaded and listening
    if not line.startswith("serving"):
        server.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return server


def npy(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, image)
    return out.getvalue()


def in_process(predictor: Predictor, images: np.ndarray, batch: int, seconds: float) -> float:
    """Images/s of `Predictor.probabilities` on batches of `batch`."""
    predictor.probabilities(images[:batch])  # traced
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = images[done % (len(images) - batch) :][:batch]
        predictor.probabilities(chunk)
        done += batch
    return done / (time.perf_counter() - start)


async def post(reader, writer, request: bytes) -> int:
    """One request on a kept-alive connection, written in one piece (a client library that
    writes headers and body apart can meet Nagle's algorithm and add 40 ms); the status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(
        line.split(b":")[1] for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    ))  # fmt: skip
    await reader.readexactly(length)
    return int(head.split(b" ")[1])


async def served(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    requests = [
        b"POST /v1/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-npy\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
        for body in bodies
    ]
    latencies: list[float] = []
    errors = dropped = 0

    async def client(number: int, stop: float) -> None:
        nonlocal errors, dropped
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = number
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            try:
                status = await asyncio.wait_for(
                    post(reader, writer, requests[i % len(requests)]), 30
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                dropped += 1
                break
            latencies.append(time.perf_counter() - sent)
            errors += status != 200
            i += clients
        writer.close()

    await client(0, time.perf_counter() + 1)  # warm
    latencies.clear()
    start = time.perf_counter()
    await asyncio.gather(*(client(n, start + seconds) for n in range(clients)))
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "images_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": len(latencies),
        "errors": errors,
        "dropped": dropped,
    }


async def streams(url: str, sequences: np.ndarray, count: int, seconds: float) -> float:
    """Steps/s of `count` WebSocket streams at once, each restarting when its image ends;
    `sequences`: (N, steps, values) of 0..255."""
    done = 0
    stop = time.perf_counter() + seconds

    async def one(number: int) -> None:
        nonlocal done
        async with websockets.connect(url, max_size=2**22) as socket_:
            i = number
            while time.perf_counter() < stop:
                await socket_.send("reset")
                await socket_.recv()
                for step in sequences[i % len(sequences)]:
                    await socket_.send(json.dumps(step.tolist()))
                    reply = json.loads(await socket_.recv())
                    if "error" in reply:
                        raise SystemExit(f"stream error: {reply['error']}")
                    done += 1
                    if time.perf_counter() >= stop:
                        return
                i += count

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return done / (time.perf_counter() - start)


def screenshot(url: str, out: Path) -> None:
    """The page after it streamed the gallery's first mistake (or first image) to the answer."""
    import shutil

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--headless", "--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1100, "height": 580})
        page.goto(url)
        page.wait_for_selector("#gallery button")
        wrong = page.locator("#gallery button.wrong")
        (wrong if wrong.count() else page.locator("#gallery button")).first.click()
        page.wait_for_selector("#answer[data-class]", timeout=120_000)
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--streams", default="1,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--screenshot", type=Path, help="PNG of the page after a stream")
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]

    predictor = Predictor(args.run_dir)
    images = np.random.default_rng(0).integers(0, 256, (512, 28, 28)).astype(np.uint8)
    bodies = [npy(image) for image in images]
    port = free_port()
    server = start_server(args.run_dir, port)
    try:
        print("| clients | in-process images/s | served images/s | served / in-process "
              "| p50 ms | p99 ms | requests | errors | dropped |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for count in clients:
            alone = in_process(predictor, images, count, args.seconds)
            load = asyncio.run(served(port, bodies, count, args.seconds))
            print(
                f"| {count} | {alone:,.0f} | {load['images_per_s']:,.0f} "
                f"| {load['images_per_s'] / alone:.0%} | {load['p50_ms']:.1f} "
                f"| {load['p99_ms']:.1f} | {load['requests']:,} | {load['errors']} "
                f"| {load['dropped']} |",
                flush=True,
            )
        if predictor.can_stream():
            steps = np.rint(predictor.sequences(images[:64]) * 255).astype(int)
            for count in [int(n) for n in args.streams.split(",")]:
                rate = asyncio.run(
                    streams(f"ws://127.0.0.1:{port}/v1/stream", steps, count, args.seconds)
                )
                print(f"streaming: {count} stream(s) at once, {rate:,.0f} steps/s in all")
        if args.screenshot:
            screenshot(f"http://127.0.0.1:{port}/", args.screenshot)
            print(f"screenshot: {args.screenshot}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()

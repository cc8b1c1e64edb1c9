"""`fashion-tcn serve`: a run behind an HTTP API, and a page that shows the TCN read an image.

The run is loaded once (calibrated, as `predict`). Requests that arrive together are predicted
together: while the model answers one batch, `Batcher` queues what comes in and then predicts it
all in one call, so throughput holds under many clients and a lone client never waits for
company; its queue is bounded, and a full queue answers 503 at once rather than letting every
client wait longer. Each WebSocket stream keeps its own layer caches (`stream.StreamingClassifier`,
its weights shared by all), so a new step costs one kernel application per layer whatever came
before.

Every failure is a 4xx (5xx: the server's own) with `{"error": "one line"}`; the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from fashion_tcn.data import CLASS_NAMES, DataError, load_fashion_mnist
from fashion_tcn.predict import Item, Predictor, decode, top_k

KINDS = {  # request content type -> what `predict.decode` reads it as
    "application/json": "json",
    "text/csv": "csv",
    "application/x-npy": "npy",
    "application/octet-stream": None,  # .npy or an image, by content
}

PAGE = Environment(loader=PackageLoader("fashion_tcn"), autoescape=True).get_template("serve.html")


@dataclass(frozen=True)
class Limits:
    """What one client may ask; beyond it, a 4xx (503 when the server is full)."""

    body_bytes: int = 8 * 2**20  # one request body
    images: int = 256  # images in one request
    queue: int = 2048  # images waiting for the model, all clients together
    batch: int = 256  # images in one model call
    window_s: float = 0.0  # how long a batch waits for company: none, it takes what queued
    # while the model was busy, so one client waits for nothing and many share calls
    streams: int = 64  # WebSocket streams open at once


class RefusedError(Exception):
    """A request the server answers with `status` and a one-line `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """Images from concurrent requests -> one model call per batch, results back to each."""

    def __init__(self, predict, limits: Limits):
        self.predict_batch, self.limits = predict, limits
        self.queue: asyncio.Queue = asyncio.Queue()
        self.waiting = 0  # images queued, not yet in a batch

    async def predict(self, images: np.ndarray) -> np.ndarray:
        if self.waiting + len(images) > self.limits.queue:
            raise RefusedError(503, f"busy: {self.waiting} images waiting; try again shortly")
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(images)
        self.queue.put_nowait((images, future))
        return await future

    async def run(self) -> None:
        """The one consumer: take what is queued, wait `window_s` for more, predict, hand out.
        A batch never grows past `limits.batch` (the sizes traced ahead): a request that would
        overfill it opens the next one."""
        loop = asyncio.get_running_loop()
        held = None
        while True:
            batch = [held or await self.queue.get()]
            held = None
            size, deadline = len(batch[0][0]), loop.time() + self.limits.window_s
            while size < self.limits.batch:
                if not self.queue.empty():  # what queued while the model was busy
                    item = self.queue.get_nowait()
                elif (left := deadline - loop.time()) > 0:
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                else:
                    break
                if size + len(item[0]) > self.limits.batch:
                    held = item
                    break
                batch.append(item)
                size += len(item[0])
            self.waiting -= size
            try:
                images = np.concatenate([images for images, _ in batch])
                probs = await asyncio.to_thread(self.predict_batch, images)
            except Exception as error:  # the model failed: every waiting client hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for images, future in batch:
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(probs[start : start + len(images)])
                start += len(images)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes, declared or not."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RefusedError(413, f"body of {int(declared):,} bytes, more than {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RefusedError(413, f"body of more than {limit:,} bytes")
    return bytes(body)


def request_items(body: bytes, content_type: str, limits: Limits) -> list[Item]:
    """The images in a request body, read as `predict` reads files."""
    media = content_type.split(";")[0].strip().lower()
    if media.startswith("image/"):
        kind = "image"
    elif media in KINDS:
        kind = KINDS[media]
    else:
        raise RefusedError(
            415,
            f"content type {media or '(none)'!r}: send an image, text/csv, application/json "
            "(28x28 arrays of 0..255) or application/x-npy",
        )
    items = decode("request", body, kind)
    if len(items) > limits.images:
        raise RefusedError(413, f"{len(items)} images in one request, at most {limits.images}")
    return items


def gallery(predict, data_dir: str | None, count: int = 24, pool: int = 2000) -> list[dict]:
    """Test images for the page, up to half of them predicted wrong (the model's mistakes
    teach the most); empty when the data cannot be found."""
    try:
        _, test = load_fashion_mnist(data_dir, may_download=False)
    except (DataError, OSError):
        return []
    images, labels = test.images[:pool], test.labels[:pool]
    predicted = predict(images).argmax(axis=1)
    right, wrong = np.flatnonzero(predicted == labels), np.flatnonzero(predicted != labels)
    wrong = wrong[: count // 2]
    chosen = np.concatenate([right[: count - len(wrong)], wrong])
    return [
        {
            "index": int(i),
            "label": CLASS_NAMES[labels[i]],
            "predicted": CLASS_NAMES[predicted[i]],
            "pixels": images[i].tolist(),
        }
        for i in sorted(chosen)
    ]


class Stream:
    """One WebSocket client's stream: steps of 0..255 values in, calibrated probabilities out."""

    def __init__(self, predictor: Predictor, template, lock: threading.Lock):
        self.predictor, self.classifier, self.lock = predictor, template.fresh(), lock
        self.steps, self.features = predictor.sequence_shape()

    def feed(self, message: str) -> dict:
        """A JSON message -> the reply: "reset", one step (F numbers) or several ([[F], ...])."""
        if message.strip() in ("reset", '"reset"'):
            self.classifier.reset()
            return {"steps_seen": 0}
        try:
            x = np.asarray(json.loads(message), dtype=np.float64)
        except (json.JSONDecodeError, ValueError, TypeError):
            raise ValueError(
                "a message is one step ([F numbers]) or several ([[F numbers], ...])"
            ) from None
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.features or len(x) == 0:
            shape = list(x.shape)
            raise ValueError(f"steps of shape {shape}; each step has {self.features} values")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255:
            raise ValueError("step values must be finite and within 0..255")
        seen = self.classifier.steps_seen
        if seen + len(x) > self.steps:
            raise ValueError(f'the sequence has {self.steps} steps, {seen} seen; send "reset"')
        with self.lock:
            probs = self.classifier.run((x / 255.0)[None].astype("float32"))[0]
        after = [
            self.predictor.calibrated_after(p[None], seen + i + 1)[0] for i, p in enumerate(probs)
        ]
        last = after[-1]
        return {
            "steps_seen": seen + len(x),
            "fraction": (seen + len(x)) / self.steps,
            "after": [[round(float(v), 6) for v in p] for p in after],
            "class": CLASS_NAMES[int(last.argmax())],
            "probability": float(last.max()),
        }


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter, clipped to low..high; not an integer: 400."""
    raw = request.query_params.get(name) if request.scope["query_string"] else None
    if raw is None:  # (most requests have no query: no parsing for them)
        return default
    try:
        return max(low, min(int(raw), high))
    except ValueError:
        raise RefusedError(400, f"query parameter {name}={raw!r}: not an integer") from None


def query_flag(request: Request, name: str) -> bool:
    """A true/false query parameter, false when absent; anything else: 400."""
    raw = request.query_params.get(name, "") if request.scope["query_string"] else ""
    if raw.lower() not in ("", "false", "0", "true", "1"):
        raise RefusedError(400, f"query parameter {name}={raw!r}: true or false")
    return raw.lower() in ("true", "1")


def leave_a_core() -> None:
    """On TensorFlow, the model computes on one core fewer than the machine has: the event
    loop that reads requests and writes answers needs one of its own (on 2 cores it served
    15-20% more images per second than with the model on both). Before the first model only;
    TF_NUM_INTRAOP_THREADS, when set, decides instead."""
    import keras

    if keras.backend.backend() != "tensorflow" or os.environ.get("TF_NUM_INTRAOP_THREADS"):
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TensorFlow already running: left as it is
        tf.config.threading.set_intra_op_parallelism_threads(max(1, (os.cpu_count() or 2) - 1))


def build_app(run_dir: Path, limits: Limits = Limits(), with_gallery: bool = True) -> Starlette:
    """The API and the page for one run, loaded now (slow) so that requests are fast. Plain
    Starlette routes: the hot path is parsing, one queue and one JSON reply, and every layer
    a request passes through costs throughput on a small machine."""
    import keras

    from fashion_tcn import explain
    from fashion_tcn.stream import StreamingClassifier

    predictor = Predictor(run_dir)
    # one model call at a time: on JAX, Keras's predict replaces (donates) the arrays a stream
    # step may be reading; on 2 cores, calls side by side would gain nothing anyway
    model_lock = threading.Lock()

    # Every new batch size is a new trace (seconds, stalling every client): TensorFlow traces a
    # shape-free function after two sizes; JAX compiles each size, so batches are padded to a
    # power of two. Both are warmed up here, not on a client's time.
    pad = keras.backend.backend() == "jax"

    def predict_locked(images: np.ndarray) -> np.ndarray:
        count = len(images)
        if pad and count & (count - 1):
            filler = np.zeros(((1 << count.bit_length()) - count, *images.shape[1:]), images.dtype)
            images = np.concatenate([images, filler])
        with model_lock:
            return predictor.probabilities(images)[:count]

    sizes = [2**k for k in range(limits.batch.bit_length())] if pad else [1, 2]
    for size in sizes:
        predict_locked(np.zeros((size, 28, 28), np.uint8))
    template = None
    if predictor.can_stream():
        template = StreamingClassifier(predictor.model)
        template.step(np.zeros((1, predictor.sequence_shape()[1]), np.float32))  # compiled
        template.reset()
    batcher = Batcher(predict_locked, limits)
    info = predictor.info()
    shown = gallery(predict_locked, predictor.cfg.data.data_dir) if with_gallery else []
    html = PAGE.render(info=info)
    explaining = asyncio.Semaphore(1)  # occlusion is hundreds of model calls: one at a time
    open_streams = 0

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "waiting": batcher.waiting, "streams": open_streams})

    async def run_info(request: Request) -> JSONResponse:
        return JSONResponse(info)

    async def test_images(request: Request) -> JSONResponse:
        return JSONResponse({"images": shown})

    async def readable(request: Request) -> list[Item]:
        body = await read_body(request, limits.body_bytes)
        return request_items(body, request.headers.get("content-type", ""), limits)

    async def predict(request: Request) -> JSONResponse:
        top = query_int(request, "top", 3, 1, 10)
        with_images = query_flag(request, "images")
        items = await readable(request)
        good = [item for item in items if item.error is None]
        if not good:
            return JSONResponse(
                {"error": items[0].error, "predictions": [_error_record(i) for i in items]}, 400
            )
        probs = iter(await batcher.predict(np.stack([item.image for item in good])))
        records = []
        for item in items:
            if item.error is not None:
                records.append(_error_record(item))
                continue
            record = {"input": item.name, "top": top_k(next(probs), top)}
            if with_images:
                record["image"] = item.image.tolist()
            records.append(record)
        return JSONResponse({"predictions": records})

    async def occlusion(request: Request) -> JSONResponse:
        """The first readable image: which parts of it moved the prediction (occlusion)."""
        items = [item for item in await readable(request) if item.error is None]
        if not items:
            raise RefusedError(400, "no readable image in the request")

        def occlude(image: np.ndarray) -> dict:
            with model_lock:
                return explain.explain(
                    predictor.model, image[None], predictor.cfg.data.sequence, predictor.permutation
                )

        async with explaining:
            found = await asyncio.to_thread(occlude, items[0].image)
        attribution = found["attribution"][0]
        scale = float(np.abs(attribution).max()) or 1.0
        return JSONResponse(
            {
                "input": items[0].name,
                "class": CLASS_NAMES[int(found["predicted"][0])],
                "occlusion": np.round(attribution / scale, 4).tolist(),
                "steps": np.round(found["steps"][0] / scale, 4).tolist(),
            }
        )

    async def stream(socket: WebSocket) -> None:
        nonlocal open_streams
        await socket.accept()
        if template is None:
            await socket.close(1003, f"streaming needs a TCN model, this is {info['model']}")
            return
        if open_streams >= limits.streams:
            await socket.close(1013, f"{open_streams} streams open, at most {limits.streams}")
            return
        open_streams += 1
        client = Stream(predictor, template, model_lock)
        try:
            while (message := await socket.receive())["type"] != "websocket.disconnect":
                try:
                    if message.get("text") is None:
                        raise ValueError("send steps as JSON text, not binary")
                    reply = await asyncio.to_thread(client.feed, message["text"])
                except ValueError as bad:
                    reply = {"error": str(bad)}
                await socket.send_json(reply)
        except WebSocketDisconnect:  # the client went away while we answered
            pass
        finally:
            open_streams -= 1

    async def refused(request: Request, exc: RefusedError) -> JSONResponse:
        return error(exc.status, str(exc))

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        reason = (str(exc).splitlines() or [""])[0]
        return error(500, f"the server failed: {type(exc).__name__}: {reason}")

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error(404, f"{request.url.path}: no such page; see / for the API")

    async def wrong_method(request: Request, exc: Exception) -> JSONResponse:
        return error(405, f"{request.method} {request.url.path}: method not allowed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    return Starlette(
        routes=[
            Route("/", page),
            Route("/v1/health", health),
            Route("/v1/info", run_info),
            Route("/v1/gallery", test_images),
            Route("/v1/predict", predict, methods=["POST"]),
            Route("/v1/explain", occlusion, methods=["POST"]),
            WebSocketRoute("/v1/stream", stream),
        ],
        exception_handlers={
            RefusedError: refused,
            404: not_found,
            405: wrong_method,
            Exception: failed,
        },
        lifespan=lifespan,
    )


def _error_record(item: Item) -> dict:
    return {"input": item.name, "error": item.error}

"""`fashion-tcn serve`: every input kind and failure class of the API, the batcher, the stream
against `predict --stream`, the page in headless Chromium, and a port that is taken."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="serve's extra is not installed")
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from fashion_tcn.cli import main
from fashion_tcn.data import load_fashion_mnist
from fashion_tcn.predict import Predictor
from fashion_tcn.rundir import RunDir
from fashion_tcn.serve import Batcher, Limits, RefusedError, build_app

pytestmark = pytest.mark.backend

LIMITS = Limits(body_bytes=100_000, images=8, streams=2, batch=8)  # batch: 4 JAX compilations


@pytest.fixture(scope="module")
def predictor(tiny_run) -> Predictor:
    return Predictor(tiny_run)


@pytest.fixture(scope="module")
def client(tiny_run):
    with TestClient(build_app(tiny_run, LIMITS)) as test_client:  # runs the batcher
        yield test_client


@pytest.fixture(scope="module")
def images(tiny_data_dir) -> np.ndarray:
    return load_fashion_mnist(tiny_data_dir)[1].images[:4]


def png(image: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=fmt)
    return out.getvalue()


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def post(client, body: bytes | str, content_type: str, **params):
    return client.post(
        "/v1/predict", content=body, headers={"content-type": content_type}, params=params
    )


def top(record: dict) -> tuple[str, float]:
    return record["top"][0]["class"], record["top"][0]["probability"]


def test_info_and_health_describe_the_run(client, predictor, tiny_run):
    info = client.get("/v1/info").json()
    run = RunDir(tiny_run)
    assert info["parameters"] == predictor.model.count_params()
    assert info["test_accuracy"] == run.metrics()["accuracy"]
    assert info["temperature"] == pytest.approx(run.temperature())
    assert (info["sequence"], info["steps"], info["values_per_step"]) == ("rows", 28, 28)
    assert len(info["classes"]) == 10 and info["streams"] is True
    assert client.get("/v1/health").json()["status"] == "ok"


def test_every_input_kind_gives_the_in_process_prediction(client, predictor, images):
    expected = predictor.probabilities(images)

    def check(record: dict, i: int) -> None:
        best = int(expected[i].argmax())
        assert record["top"][0]["index"] == best
        assert record["top"][0]["probability"] == pytest.approx(expected[i, best], abs=1e-5)

    check(post(client, png(images[0]), "image/png").json()["predictions"][0], 0)
    jpeg = post(client, png(images[1], "JPEG"), "image/jpeg").json()["predictions"][0]
    assert "top" in jpeg  # lossy: the class may differ, the answer may not be missing
    records = post(client, npy(images), "application/x-npy").json()["predictions"]
    assert [r["input"] for r in records] == [f"request[{i}]" for i in range(4)]
    for i, record in enumerate(records):
        check(record, i)
    as_json = json.dumps(images[:2].tolist())
    for i, record in enumerate(post(client, as_json, "application/json").json()["predictions"]):
        check(record, i)
    rows = "\n".join(",".join(map(str, [7, *image.ravel()])) for image in images[:2])
    csv_records = post(client, rows, "text/csv").json()["predictions"]
    check(csv_records[1], 1)
    one = post(client, npy(images[3]), "application/octet-stream", images="true").json()
    assert np.array_equal(one["predictions"][0]["image"], images[3])


def test_a_bad_row_is_its_own_record_and_the_rest_are_served(client, images):
    good = ",".join(map(str, images[0].ravel()))
    response = post(client, f"{good}\n1,2,3\n{good}", "text/csv")
    assert response.status_code == 200
    records = response.json()["predictions"]
    assert records[1] == {"input": "request:2", "error": "request:2: 3 columns, expected 785 "
                          "(label + 784 pixels) or 784"}  # fmt: skip
    assert "top" in records[0] and "top" in records[2]


@pytest.mark.parametrize(
    "body, content_type, status, words",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png", 400, "not an image"),
        (b"plain words", "image/png", 400, "not an image"),
        (b"", "image/png", 400, "empty file"),
        ("[[1, 2], [3, 4]]", "application/json", 400, "shape (2, 2)"),
        (json.dumps([[float("nan")] * 28] * 28), "application/json", 400, "NaN"),
        ("[[300] * 28]", "application/json", 400, "not JSON"),
        (json.dumps([[300] * 28] * 28), "application/json", 400, "outside 0..255"),
        ("[[1, 2], [3]]", "application/json", 400, "unequal length"),
        ("hello", "text/plain", 415, "content type 'text/plain'"),
        (b"x" * 100_001, "image/png", 413, "more than 100,000"),
        (json.dumps([[[0] * 28] * 28] * 9), "application/json", 413, "9 images"),
        (b"\x93NUMPY" + b"\0" * 20, "application/x-npy", 400, "not a readable .npy"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_a_bad_request_is_a_4xx_with_one_line_and_the_server_goes_on(
    client, images, body, content_type, status, words
):
    response = post(client, body, content_type)
    assert response.status_code == status
    message = response.json()["error"]
    assert words in message and "\n" not in message
    assert post(client, png(images[0]), "image/png").status_code == 200


@pytest.mark.parametrize(
    "method, path, params, status, words",
    [
        ("post", "/v1/predict", {"top": "many"}, 400, "top='many': not an integer"),
        ("post", "/v1/predict", {"images": "perhaps"}, 400, "images='perhaps': true or false"),
        ("get", "/v1/nothing", {}, 404, "/v1/nothing: no such page"),
        ("get", "/v1/predict", {}, 405, "GET /v1/predict: method not allowed"),
    ],
)
def test_bad_queries_paths_and_methods_are_one_line_json(
    client, images, method, path, params, status, words
):
    response = client.request(method, path, params=params, content=npy(images[0]))
    assert response.status_code == status
    message = response.json()["error"]
    assert words in message and "\n" not in message


def test_top_is_clipped_to_the_ten_classes(client, images):
    for asked, given in ((99, 10), (0, 1), (4, 4)):
        record = post(client, npy(images[0]), "application/x-npy", top=asked).json()
        assert len(record["predictions"][0]["top"]) == given


def test_a_truncated_png_is_a_400(client, images):
    data = png(images[0])
    response = post(client, data[: len(data) // 2], "image/png")
    assert response.status_code == 400 and "damaged image" in response.json()["error"]


def test_the_batcher_predicts_concurrent_requests_together_and_bounds_its_queue():
    calls: list[int] = []

    def predict(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return images.reshape(len(images), -1).sum(axis=1, keepdims=True).astype(float)

    async def scenario() -> tuple[list[np.ndarray], str]:
        batcher = Batcher(predict, Limits(queue=12, batch=64, window_s=0.05))
        task = asyncio.create_task(batcher.run())
        requests = [np.full((2, 28, 28), i, np.uint8) for i in range(6)]
        answers = asyncio.gather(*(batcher.predict(r) for r in requests))
        await asyncio.sleep(0)  # all six queued: the queue holds 12 images, it is full
        try:
            await batcher.predict(np.zeros((1, 28, 28), np.uint8))
            refused = ""
        except RefusedError as error:
            refused = f"{error.status} {error}"
        results = await answers
        task.cancel()
        return results, refused

    results, refused = asyncio.run(scenario())
    assert calls == [12]  # one model call for six requests
    for i, result in enumerate(results):
        assert result.ravel().tolist() == [i * 784.0] * 2  # each client got its own images
    assert refused.startswith("503 busy")


def test_a_batch_never_grows_past_its_limit_and_the_overflow_opens_the_next():
    """The batch sizes are traced (JAX: compiled) before the first client; a batch past the
    limit would be a new size, and seconds of stall, while clients wait."""
    calls: list[int] = []

    def predict(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return images.reshape(len(images), -1)[:, :1].astype(float)

    async def scenario() -> list[np.ndarray]:
        batcher = Batcher(predict, Limits(batch=5, window_s=0.05))
        task = asyncio.create_task(batcher.run())
        requests = [np.full((2, 28, 28), i, np.uint8) for i in range(6)]
        results = await asyncio.gather(*(batcher.predict(r) for r in requests))
        task.cancel()
        return results

    results = asyncio.run(scenario())
    assert calls == [4, 4, 4]
    assert [r.ravel().tolist() for r in results] == [[i, i] for i in range(6)]


def stream_rows(socket_, image: np.ndarray) -> list[dict]:
    replies = []
    for row in image:
        socket_.send_text(json.dumps(row.tolist()))
        replies.append(socket_.receive_json())
    return replies


def test_the_stream_answers_after_every_step_as_predict_stream_does(client, predictor, images):
    expected = predictor.stream(images[0])  # after 10%, 25%, ... of the rows, calibrated
    with client.websocket_connect("/v1/stream") as ws:
        replies = stream_rows(ws, images[0])
        assert [r["steps_seen"] for r in replies] == list(range(1, 29))
        for point in expected:
            reply = replies[point["steps"] - 1]
            assert reply["class"] == point["class"]
            assert reply["probability"] == pytest.approx(point["probability"], abs=1e-5)
        ws.send_text(json.dumps(images[0][0].tolist()))
        assert "28 steps, 28 seen" in ws.receive_json()["error"]
        ws.send_text("reset")
        assert ws.receive_json() == {"steps_seen": 0}
        ws.send_text(json.dumps(images[0][:3].tolist()))  # several steps in one message
        chunk = ws.receive_json()
        assert chunk["steps_seen"] == 3 and len(chunk["after"]) == 3
        np.testing.assert_allclose(chunk["after"], [r["after"][0] for r in replies[:3]], atol=1e-5)


@pytest.mark.parametrize(
    "message, words",
    [("[1, 2]", "each step has 28 values"), ("{", "a message is one step"),
     (json.dumps([-1] * 28), "within 0..255"), (b"\0\1", "not binary")],
)  # fmt: skip
def test_a_bad_step_is_an_error_reply_and_the_stream_goes_on(client, images, message, words):
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(images[0][0].tolist()))
        assert ws.receive_json()["steps_seen"] == 1
        ws.send_bytes(message) if isinstance(message, bytes) else ws.send_text(message)
        assert words in ws.receive_json()["error"]
        ws.send_text(json.dumps(images[0][1].tolist()))
        assert ws.receive_json()["steps_seen"] == 2


def test_a_socket_closed_mid_stream_frees_its_place(client, images):
    for _ in range(3):  # more than LIMITS.streams: each closed stream gave its place back
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps(images[0][0].tolist()))
            ws.receive_json()
    deadline = time.monotonic() + 5
    while client.get("/v1/health").json()["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/v1/health").json()["streams"] == 0
    with client.websocket_connect("/v1/stream") as one, client.websocket_connect("/v1/stream"):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/v1/stream") as third,
        ):
            third.receive_json()
        assert refused.value.code == 1013
        one.send_text(json.dumps(images[0][0].tolist()))
        assert one.receive_json()["steps_seen"] == 1


def test_explain_returns_the_occlusion_map_of_the_answer(client, predictor, images):
    response = client.post(
        "/v1/explain", content=png(images[0]), headers={"content-type": "image/png"}
    )
    found = response.json()
    occlusion = np.asarray(found["occlusion"])
    assert occlusion.shape == (28, 28) and np.abs(occlusion).max() == pytest.approx(1.0)
    assert len(found["steps"]) == 28
    predicted = predictor.probabilities(images[:1]).argmax()
    assert found["class"] == predictor.info()["classes"][predicted]


def test_the_gallery_holds_test_images_with_the_models_answers(client, predictor):
    gallery = client.get("/v1/gallery").json()["images"]
    assert 0 < len(gallery) <= 24
    pixels = np.asarray([item["pixels"] for item in gallery], np.uint8)
    predicted = predictor.probabilities(pixels).argmax(axis=1)
    classes = predictor.info()["classes"]
    assert [item["predicted"] for item in gallery] == [classes[p] for p in predicted]


def test_serve_on_a_taken_port_is_one_line_and_exit_2(tiny_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tiny_run), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}: cannot listen there" in err[0]


@pytest.fixture(scope="module")
def server(tiny_run):
    """The app on a real loopback port, in a thread (the page needs a browser to reach it)."""
    import uvicorn

    config = uvicorn.Config(build_app(tiny_run), port=0, log_level="warning")
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)


def test_the_page_streams_a_test_image_to_the_answer_predict_gives(server, predictor):
    from playwright.sync_api import sync_playwright
    from test_report_browser import CHROMIUM_ARGS, find_chromium

    chromium = find_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server)
        page.wait_for_selector("#gallery button")
        page.locator("#gallery button").first.click()
        page.wait_for_selector("#answer[data-class]", timeout=60_000)
        answer = page.locator("#answer").get_attribute("data-class")
        progress = page.locator("#progress").text_content()
        pixels = page.evaluate("fetch('/v1/gallery').then(r => r.json())")["images"][0]["pixels"]
        browser.close()
    expected = predictor.probabilities(np.asarray([pixels], np.uint8)).argmax()
    assert answer == predictor.info()["classes"][expected]
    assert progress.startswith("28 of 28 steps seen (100%)")
    assert errors == []


def test_a_model_failure_is_a_500_with_one_line_and_the_server_goes_on(
    tiny_run, images, monkeypatch
):
    app = build_app(tiny_run, LIMITS, with_gallery=False)
    with TestClient(app, raise_server_exceptions=False) as own:
        good = Predictor.probabilities

        def broken(self, batch):
            raise RuntimeError("out of memory\nsecond line")

        monkeypatch.setattr(Predictor, "probabilities", broken)
        response = post(own, png(images[0]), "image/png")
        assert response.status_code == 500
        assert response.json() == {"error": "the server failed: RuntimeError: out of memory"}
        monkeypatch.setattr(Predictor, "probabilities", good)
        assert post(own, png(images[0]), "image/png").status_code == 200

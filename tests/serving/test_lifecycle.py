"""Starting and stopping `clip-flant5 serve`: a network address needs an API key (refused at startup otherwise), the
key is checked on every request, and SIGTERM answers the requests in flight before the process exits with 0."""

import json
import signal
import socket
import time

import httpx
import pytest

from tests.support.cli import run_cli
from tests.support.images import make_images
from tests.support.models import save_model_folder
from tests.support.servers import HANG_LIMIT, ServerProcess, base64_png
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.serving.client import RewardClient, RewardServerError


KEY = "k3y-for-the-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def model_folder(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-lifecycle") / "model"
    save_model_folder(tiny, folder)
    return folder


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.org"])
def test_a_network_address_needs_a_key_or_no_auth(model_folder, host, capsys):
    code, _, err = run_cli(["serve", "--model", str(model_folder), "--host", host], capsys)
    assert code == 2
    assert "--api-key-file" in err and "--no-auth" in err


@pytest.mark.parametrize("content", ["", "short", "two words and more text"])
def test_an_unusable_key_file_is_refused_at_startup(model_folder, tmp_path, content, capsys):
    key_file = tmp_path / "key.txt"
    key_file.write_text(content)
    code, _, err = run_cli(["serve", "--model", str(model_folder), "--api-key-file", str(key_file)], capsys)
    assert code == 2
    assert "--api-key-file" in err


def test_a_missing_model_is_refused_before_listening(tmp_path, capsys):
    code, _, err = run_cli(["serve", "--model", str(tmp_path / "no-such-model")], capsys)
    assert code == 2
    assert "no-such-model" in err


def test_a_model_that_fails_to_load_stops_the_server_with_status_2(model_folder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in model_folder.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    server = ServerProcess(broken, tmp_path / "server.log")
    try:
        assert server.process.wait(timeout=HANG_LIMIT) == 2
    finally:
        server.kill()
    output = server.output()
    assert "could not be loaded" in output and "model.safetensors" in output
    assert "Traceback" not in output


def _partial_request(port: int, body: bytes, headers: dict) -> tuple[socket.socket, bytes]:
    """A connection that sent all of a POST /score but its body's last byte, and that byte."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=HANG_LIMIT)
    lines = [f"{name}: {value}" for name, value in headers.items()]
    head = "\r\n".join(["POST /score HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
                        f"Content-Length: {len(body)}", *lines, "", ""])  # fmt: skip
    connection.sendall(head.encode() + body[:-1])
    return connection, body[-1:]


def _read_response(connection: socket.socket) -> tuple[int, dict]:
    with connection.makefile("rb") as stream:
        status = int(stream.readline().split()[1])
        length = 0
        while (line := stream.readline().strip()) != b"":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, json.loads(stream.read(length))


def test_the_key_is_required_and_sigterm_answers_requests_in_flight(model_folder, tiny, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    server = ServerProcess(model_folder, tmp_path / "server.log", "--api-key-file", str(key_file))
    good = {"Authorization": f"Bearer {KEY}"}
    try:
        server.wait_ready(headers=good)
        images = make_images([(20, 40), (50, 30), (33, 33)], seed=5)
        payload = {"images": [base64_png(image) for image in images], "texts": ["a red circle", "two", "a square"]}
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}):
            for method, path in (("GET", "/health"), ("POST", "/score"), ("GET", "/metrics")):
                response = httpx.request(method, server.url + path, json=payload, headers=headers, timeout=HANG_LIMIT)
                assert response.status_code == 401, (headers, path)
                assert "API key" in response.json()["error"]
        with pytest.raises(RewardServerError, match="401"):
            RewardClient(server.url, api_key="wrong-key", retries=0).score(images, payload["texts"])
        scorer = VQAScore(model=tiny[0], processor=tiny[1])
        expected = scorer(images, payload["texts"]).tolist()
        client = RewardClient(server.url, api_key=KEY, timeout=HANG_LIMIT, retries=0)
        assert client.score(images, payload["texts"]) == pytest.approx(expected, rel=1e-5)

        # Requests in flight when SIGTERM arrives: all but the last byte of their bodies sent.
        body = json.dumps(payload).encode()
        in_flight = [_partial_request(server.port, body, good) for _ in range(4)]
        server.process.send_signal(signal.SIGTERM)
        # Once the server stops accepting connections it has begun its shutdown; the requests are still in flight.
        deadline = time.monotonic() + HANG_LIMIT
        with pytest.raises(OSError):
            while time.monotonic() < deadline:
                socket.create_connection(("127.0.0.1", server.port), timeout=HANG_LIMIT).close()
                time.sleep(0.05)
        for connection, last_byte in in_flight:
            connection.sendall(last_byte)
        for connection, _ in in_flight:
            status, answer = _read_response(connection)
            connection.close()
            assert status == 200
            assert [result["score"] for result in answer["results"]] == pytest.approx(expected, rel=1e-5)
        assert server.process.wait(timeout=HANG_LIMIT) == 0, server.output()[-4000:]
        assert "Traceback" not in server.output()
    finally:
        server.kill()

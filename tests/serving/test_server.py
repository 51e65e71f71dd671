"""`clip-flant5 serve` as a real process on a localhost port, called over real HTTP: Flow-GRPO's pickle protocol,
Flow-Factory's JSON, our /score, their refusals, limits, concurrent clients and clients that hang up. Every score is
compared with in-process `VQAScore` on the same decoded image and text."""

import base64
import json
import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.support.images import make_images
from tests.support.models import save_model_folder
from tests.support.servers import HANG_LIMIT, ServerProcess, base64_png, decoded, encoded
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.serving.client import RewardClient, RewardServerError


TEXTS = ["a red circle", "a blue square on the left", "green", "a yellow cross on the top", "x"]
MAX_BODY_MB = 1
MAX_ITEMS = 64


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    save_model_folder(tiny, folder / "model")
    # The tiny tokenizer declares no length limit; FlanT5's is 512 tokens. Ours: about 130 tokens of text.
    tokenizer_config = folder / "model" / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps({**json.loads(tokenizer_config.read_text()), "model_max_length": 200}))
    options = ["--max-batch-size", "8", "--max-wait-ms", "20", "--max-body-mb", str(MAX_BODY_MB),
               "--max-items", str(MAX_ITEMS)]  # fmt: skip
    process = ServerProcess(folder / "model", folder / "server.log", *options)
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


@pytest.fixture(scope="module")
def images():
    return make_images([(20, 40), (50, 30), (33, 33), (24, 10), (64, 48), (17, 29)], seed=3)


def post(server, path: str, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, timeout=HANG_LIMIT, **kwargs)


def in_process(scorer, images, texts, **kwargs) -> list[float]:
    return scorer(images, texts, **kwargs).tolist()


def test_health_names_the_model(server):
    answer = httpx.get(server.url + "/health", timeout=HANG_LIMIT).json()
    assert answer["status"] == "ok"
    assert answer["model"].endswith("model")
    assert answer["devices"] == ["cpu"]


def test_score_pairs_equal_in_process(server, scorer, images):
    texts = [TEXTS[index % len(TEXTS)] for index in range(len(images))]
    response = post(server, "/score", json={"images": [base64_png(image) for image in images], "texts": texts})
    assert response.status_code == 200, response.text
    scores = [result["score"] for result in response.json()["results"]]
    assert scores == pytest.approx(in_process(scorer, images, texts), rel=1e-5)


def test_score_reports_each_bad_pair_and_scores_the_others(server, scorer, images):
    payload = {
        "images": [base64_png(images[0]), "not base64 !!", base64.b64encode(b"plain text").decode(),
                   base64_png(images[1]), base64_png(images[2])],
        "texts": [TEXTS[0], TEXTS[1], TEXTS[2], "word " * 600, TEXTS[3]],
    }  # fmt: skip
    response = post(server, "/score", json=payload)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert "base64" in results[1]["error"]
    assert "not an image" in results[2]["error"]
    assert "tokens" in results[3]["error"] and "limit" in results[3]["error"]
    expected = in_process(scorer, [images[0], images[2]], [TEXTS[0], TEXTS[3]])
    assert [results[0]["score"], results[4]["score"]] == pytest.approx(expected, rel=1e-5)


def test_score_matrix_with_a_template_equals_in_process(server, scorer, images):
    template = 'Is "{}" what the picture shows?'
    payload = {"images": [base64_png(image) for image in images[:3]], "texts": TEXTS[:4], "matrix": True,
               "question_template": template}  # fmt: skip
    response = post(server, "/score", json=payload)
    assert response.status_code == 200, response.text
    expected = scorer.score_matrix(images[:3], TEXTS[:4], question_template=template)
    assert np.allclose(response.json()["scores"], expected.numpy(), rtol=1e-5, atol=0)
    assert response.json()["errors"] == []


def test_a_bad_template_is_refused(server, images):
    response = post(
        server, "/score", json={"images": [base64_png(images[0])], "texts": ["a"], "question_template": "no slot"}
    )
    assert response.status_code == 422
    assert "question_template" in response.json()["error"]


def test_flow_factory_compute_equals_in_process(server, scorer, images):
    # As Flow-Factory's RemotePointwiseRewardModel sends it.
    payload = {"prompt": TEXTS[:4], "image": [base64_png(image) for image in images[:4]], "video": None,
               "condition_images": None, "condition_videos": None}  # fmt: skip
    response = post(server, "/compute", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["rewards"] == pytest.approx(in_process(scorer, images[:4], TEXTS[:4]), rel=1e-5)


def test_flow_factory_video_items_score_as_score_videos(server, scorer, images):
    # A video item's reward is score_videos' "average" mode on the decoded frames (8 sampled uniformly; a 3-frame
    # video uses every frame); image items in the same request are scored as images.
    frames = [images[1], images[2], images[3]]
    payload = {"prompt": TEXTS[:3], "image": [base64_png(images[0]), None, base64_png(images[2])],
               "video": [None, [base64_png(frame) for frame in frames], None]}  # fmt: skip
    response = post(server, "/compute", json=payload)
    assert response.status_code == 200, response.text
    rewards = response.json()["rewards"]
    frames_seen = [decoded(encoded(frame)) for frame in frames]
    expected_video = float(scorer.score_videos([frames_seen], [TEXTS[1]])[0])
    assert rewards[1] == pytest.approx(expected_video, rel=1e-5)
    assert [rewards[0], rewards[2]] == pytest.approx(
        in_process(scorer, [images[0], images[2]], [TEXTS[0], TEXTS[2]]), rel=1e-5
    )


def test_flow_factory_bad_video_frames_are_named_by_item(server, images):
    payload = {"prompt": TEXTS[:2], "image": [base64_png(images[0]), None], "video": [None, ["%%%", "%%%"]]}
    response = post(server, "/compute", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert "item 1: a frame of the video" in error and "item 0" not in error


def test_flow_factory_bad_items_are_named(server, images):
    payload = {"prompt": TEXTS[:3], "image": [base64_png(images[0]), "%%%", base64.b64encode(b"GIF89a?").decode()]}
    response = post(server, "/compute", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert "item 1" in error and "base64" in error and "item 2" in error and "item 0" not in error


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("as_array", [True, False])
def test_flow_grpo_pickle_equals_in_process(server, scorer, images, protocol, as_array):
    jpegs = [encoded(image, "JPEG") for image in images[:4]]
    # Flow-GRPO splits its prompts with np.array_split: a numpy array of str.
    prompts = np.array_split(np.array(TEXTS[:4]), 1)[0] if as_array else TEXTS[:4]
    response = post(server, "/", content=pickle.dumps({"images": jpegs, "prompts": prompts}, protocol=protocol))
    assert response.status_code == 200, response.text
    answer = pickle.loads(response.content)
    expected = in_process(scorer, [decoded(jpeg) for jpeg in jpegs], TEXTS[:4])
    assert answer["outputs"] == pytest.approx(expected, rel=1e-5)
    assert answer["scores"] == answer["outputs"]


class _RunsACommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_naming_os_system_is_refused_and_not_run(server, images, tmp_path):
    marker = tmp_path / "the-pickle-ran"
    body = pickle.dumps({"images": [encoded(images[0], "JPEG")], "prompts": _RunsACommand(f"touch {marker}")})
    response = post(server, "/", content=body)
    assert response.status_code == 400
    assert "system" in response.json()["error"] and "refuses" in response.json()["error"]
    assert not marker.exists()


def test_malformed_bodies_get_one_line_json_errors(server):
    for path, body, status in [
        ("/score", b"{not json", 400),
        ("/score", b'{"images": "x", "texts": []}', 400),
        ("/score", b'{"images": [], "texts": [], "extra": 1}', 400),
        ("/compute", b'{"image": []}', 400),
        ("/compute", b'{"prompt": ["a", "b"], "image": ["x"]}', 422),
        ("/", b"not a pickle", 400),
        ("/", pickle.dumps({"images": [b"x"]}), 400),
    ]:
        response = post(server, path, content=body)
        assert response.status_code == status, (path, body, response.text)
        error = response.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error


def test_a_body_over_the_limit_is_refused(server, images):
    big = base64.b64encode(os.urandom(MAX_BODY_MB * 2**20)).decode()
    response = post(server, "/score", json={"images": [big], "texts": ["a"]})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_too_many_items_are_refused(server, images):
    one = base64_png(images[0])
    response = post(server, "/score", json={"images": [one] * 9, "texts": ["a"] * 8, "matrix": True})
    assert response.status_code == 413
    assert str(MAX_ITEMS) in response.json()["error"]


def test_sixteen_concurrent_clients_get_in_process_scores(server, scorer, images):
    def client(number: int) -> list[tuple[list[int], list[int], list[float]]]:
        answers = []
        for request in range(3):
            chosen = [(number + request + k) % len(images) for k in range(4)]
            texts = [(number * 3 + request + k) % len(TEXTS) for k in range(4)]
            payload = {"images": [base64_png(images[i]) for i in chosen], "texts": [TEXTS[t] for t in texts]}
            response = post(server, "/score", json=payload)
            assert response.status_code == 200, response.text
            answers.append((chosen, texts, [result["score"] for result in response.json()["results"]]))
        return answers

    with ThreadPoolExecutor(16) as pool:
        answers = [answer for result in pool.map(client, range(16)) for answer in result]
    expected = scorer.score_matrix(images, TEXTS)
    assert len(answers) == 48
    for chosen, texts, scores in answers:
        assert scores == pytest.approx([float(expected[i, t]) for i, t in zip(chosen, texts)], rel=1e-5)


def _raw_request(server, path: str, body: bytes, send: int) -> socket.socket:
    """A connection that sent the headers of a POST of `body` and its first `send` bytes."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_LIMIT)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    connection.sendall(head + body[:send])
    return connection


def test_clients_that_hang_up_do_not_wedge_the_server(server, scorer, images):
    body = json.dumps({"images": [base64_png(image) for image in images], "texts": TEXTS + ["x"]}).encode()
    # One hangs up half-way through its body, another right after sending it without reading the answer.
    _raw_request(server, "/score", body, len(body) // 2).close()
    for _ in range(3):
        _raw_request(server, "/score", body, len(body)).close()
    response = post(server, "/score", content=body)
    assert response.status_code == 200
    scores = [result["score"] for result in response.json()["results"]]
    assert scores == pytest.approx(in_process(scorer, images, TEXTS + ["x"]), rel=1e-5)


def test_the_client_scores_and_raises_on_refused_pairs(server, scorer, images):
    client = RewardClient(server.url, timeout=HANG_LIMIT, retries=0)
    assert client.score(images[:3], TEXTS[:3]) == pytest.approx(in_process(scorer, images[:3], TEXTS[:3]), rel=1e-5)
    arrays = [np.asarray(image) for image in images[:2]]
    assert client.score(arrays, TEXTS[:2]) == pytest.approx(in_process(scorer, images[:2], TEXTS[:2]), rel=1e-5)
    with pytest.raises(RewardServerError, match="pair 1: the text") as refused:
        client.score(images[:2], ["a cat", "word " * 600])
    assert refused.value.status == 422
    scores = client.score(images[:2], ["a cat", "word " * 600], on_error="nan")
    assert np.isnan(scores[1]) and scores[0] == pytest.approx(in_process(scorer, images[:1], ["a cat"])[0], rel=1e-5)
    with pytest.raises(RewardServerError, match="413"):
        client.score([images[0]] * (MAX_ITEMS + 1), ["a"] * (MAX_ITEMS + 1))


def test_metrics_count_requests_items_and_batches(server, images):
    post(server, "/score", json={"images": [base64_png(images[0])], "texts": ["a"]})
    text = httpx.get(server.url + "/metrics", timeout=HANG_LIMIT).text
    assert 'clip_flant5_requests_total{endpoint="/score",status="200"}' in text
    assert 'clip_flant5_items_total{endpoint="/score",outcome="scored"}' in text
    assert "clip_flant5_batch_size_count" in text
    assert "clip_flant5_request_latency_seconds_bucket" in text

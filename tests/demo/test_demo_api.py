"""The web demo's API endpoints through `gradio_client` against the served app (the same scorer answers directly),
its messages for bad inputs, the handlers' views, and the `clip-flant5 demo` command's refusals."""

import math

import numpy as np
import pytest
from PIL import Image

from tests.support.cli import run_cli
from tests.support.demo_server import free_port, write_bad_image, write_images


pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[demo]'")
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is not installed: pip install -e '.[demo]'")
from transformers_clipflant5.demo.app import DemoHandlers, is_loopback, launch_demo  # noqa: E402
from transformers_clipflant5.demo.views import heatmap_overlay, word_highlights  # noqa: E402


@pytest.fixture(scope="module")
def client(demo_url):
    return gradio_client.Client(demo_url, verbose=False)


def test_score_endpoint_returns_the_score_first(client, scorer, tmp_path):
    (path,) = write_images(tmp_path, 1)
    text = "a red circle on the left"
    result = client.predict(
        gradio_client.handle_file(str(path)), text, "occlusion", "Is there a circle?\na red circle", api_name="/score"
    )
    score, words, _, trace, parts, details = result
    assert math.isclose(score, float(scorer(Image.open(path), text)), rel_tol=1e-6)
    assert [entry["token"] for entry in words] == text.split()
    assert len(trace["data"]) == len(scorer.processor.encode_target("Yes"))
    assert [row[:2] for row in parts["data"]] == [["question", "Is there a circle?"], ["caption", "a red circle"]]
    assert math.isclose(details["score"], score, rel_tol=1e-9)


def test_rank_endpoint_orders_as_rank(client, scorer, tmp_path):
    paths = write_images(tmp_path, 4)
    prompt = "a blue square"
    _, table = client.predict([gradio_client.handle_file(str(path)) for path in paths], prompt, api_name="/rank")
    expected = scorer.rank([Image.open(path) for path in paths], prompt)
    assert [row[1] for row in table["data"]] == [paths[index].name for index in expected.order.tolist()]
    scores = [row[2] for row in table["data"]]
    assert np.allclose(scores, expected.scores[expected.order].numpy(), rtol=1e-6, atol=0)
    assert len(set(scores)) == 4  # distinct scores: the order is not a tie broken by input order


def test_compare_endpoint_scores_each_line(client, scorer, tmp_path):
    (path,) = write_images(tmp_path, 1)
    texts = ["a red circle", "a blue square on the top", "a green cross"]
    table = client.predict(gradio_client.handle_file(str(path)), "\n".join(texts) + "\n\n", api_name="/compare")
    direct = scorer([Image.open(path)] * 3, texts).tolist()
    assert [row[1] for row in table["data"]] == sorted(texts, key=lambda text: -direct[texts.index(text)])
    assert np.allclose([row[2] for row in table["data"]], sorted(direct, reverse=True), rtol=1e-6, atol=0)


def test_bad_inputs_get_a_message_not_a_traceback(client, tmp_path):
    (path,) = write_images(tmp_path, 1)
    image, bad = gradio_client.handle_file(str(path)), gradio_client.handle_file(str(write_bad_image(tmp_path)))
    cases = [
        ((bad, "a dog", "occlusion", ""), "/score", "not-an-image.png is not an image this demo can read"),
        ((image, "  ", "occlusion", ""), "/score", "Type a text first"),
        ((image, "a dog " * 40, "none", ""), "/score", "The text has 80 words"),
        ((image, "a dog\na <image> cat"), "/compare", "reserves for image features"),
        (([image, bad], "a dog"), "/rank", "not-an-image.png is not an image this demo can read"),
        (([], "a dog"), "/rank", "Upload some images first"),
        ((image, "\n \n"), "/compare", "Type texts, one per line"),
    ]
    for arguments, endpoint, message in cases:
        with pytest.raises(gradio_client.exceptions.AppError, match=message) as caught:
            client.predict(*arguments, api_name=endpoint)
        assert "Traceback" not in str(caught.value)


def test_word_highlights_class_words_by_sign_and_size(scorer):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    explanation = scorer.explain(image, "a red circle on the left", heatmap=None)
    values = [value for _, value in explanation.word_attributions]
    largest = max(abs(value) for value in values)
    for (word, value), (shown, kind) in zip(explanation.word_attributions, word_highlights(explanation)):
        assert shown == word
        assert kind.startswith("raises" if value > 0 else "lowers")
        assert kind.endswith("a lot") == (abs(value) >= largest / 2)
    assert min(values) < 0 < max(values)  # both kinds are shown


def test_heatmap_overlay_splits_signs_and_fits_the_display():
    image = Image.new("RGB", (1600, 400))
    heatmap = np.zeros((400, 1600), dtype=np.float32)
    heatmap[:, :800], heatmap[:, 800:] = 0.5, -0.25
    shown, masks = heatmap_overlay(image, heatmap, "occlusion")
    assert shown.size == (768, 192)
    (raises, _), (lowers, _) = masks
    assert raises.shape == lowers.shape == (192, 768)
    assert raises[:, :384].min() == 1 and raises[:, 384:].max() == 0
    assert lowers[:, 384:].min() == 0.5 and lowers[:, :384].max() == 0


def test_handlers_refuse_too_many_texts(scorer, tmp_path):
    (path,) = write_images(tmp_path, 1)
    with pytest.raises(Exception, match="at most 32"):
        DemoHandlers(scorer).compare(str(path), "\n".join(f"text {index}" for index in range(33)))


def test_only_loopback_is_served_without_a_key(scorer):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
    with pytest.raises(ValueError, match="CLIP_FLANT5_DEMO_KEY"):
        launch_demo(scorer, host="0.0.0.0", block=False)


def test_demo_command_refuses_an_open_host_without_a_key_before_loading(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("CLIP_FLANT5_DEMO_KEY", raising=False)
    # The model folder does not exist: the host is refused first, without any loading.
    status, _, stderr = run_cli(["demo", "--model", str(tmp_path / "missing"), "--host", "0.0.0.0"], capsys)
    assert status == 2 and "CLIP_FLANT5_DEMO_KEY" in stderr
    status, _, stderr = run_cli(["demo", "--model", str(tmp_path / "missing"), "--port", str(free_port())], capsys)
    assert status == 2 and "missing" in stderr and "Traceback" not in stderr


def test_demo_command_refuses_a_port_in_use_before_loading(demo_url, tmp_path, capsys):
    port = demo_url.rstrip("/").rsplit(":", 1)[1]
    status, _, stderr = run_cli(["demo", "--model", str(tmp_path / "missing"), "--port", port], capsys)
    assert status == 2 and f"cannot serve on 127.0.0.1:{port}" in stderr

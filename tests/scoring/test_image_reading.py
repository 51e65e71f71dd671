import copy

import pytest
import torch

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.image_reading import ImageReader, reading_threads


def test_images_read_in_threads_have_the_pixels_of_one_processor_call(tiny, images, tmp_path):
    _, processor = tiny
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        image.save(paths[-1])
    expected = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with ImageReader(processor.image_processor, threads=3) as reader:
        read = torch.cat([future.result() for future in reader.read(paths)])
    assert torch.equal(read, expected)


class RecordingReader(ImageReader):
    def __init__(self, image_processor):
        super().__init__(image_processor, threads=1)
        self.requested = []

    def read(self, images):
        self.requested.append(list(images))
        return super().read(images)


@pytest.mark.parametrize("read_ahead", [True, False])
def test_the_next_chunk_is_read_ahead_only_when_asked(tiny, images, read_ahead):
    _, processor = tiny
    chunks = [[0, 1], [2, 3], [4]]
    with RecordingReader(processor.image_processor) as reader:
        handed_out = reader.read_chunks(images, chunks, read_ahead)
        first = next(handed_out)
        assert len(reader.requested) == (2 if read_ahead else 1)
        assert [future.result().shape[0] for future in first] == [1, 1]
        rest = list(handed_out)
    assert reader.requested == [images[:2], images[2:4], images[4:]]
    assert [len(futures) for futures in rest] == [2, 1]


def test_an_unreadable_image_among_threaded_reads_names_its_row(tiny, images, tmp_path):
    model, processor = tiny
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    scorer = VQAScore(model, processor)
    with pytest.raises(ValueError, match=r"images\[2\]: .*not a readable image"):
        scorer([images[0], images[1], str(broken)], ["a red square"] * 3)
    skipped = []
    scores = list(
        scorer.iter_scores(
            [images[0], str(broken), images[1]],
            ["a", "b", "c"],
            on_image_error=lambda row, error: skipped.append(row),
        )
    )
    assert skipped == [1]
    assert sorted(index for rows, _ in scores for index in rows) == [0, 2]


def test_reading_threads_are_bounded(monkeypatch):
    assert 1 <= reading_threads() <= 8
    # A large machine still reads with MAX_READING_THREADS threads (more would only contend for the GIL).
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert reading_threads() == 8


def test_an_image_over_the_processors_pixel_limit_is_refused_before_it_is_decoded(tiny, tmp_path, monkeypatch):
    """The reader applies the image processor's `max_image_pixels` when it opens a file, from the header: a
    decompression bomb is never decoded (the processor's own check comes only after decoding)."""
    from PIL import Image, ImageFile

    _, processor = tiny
    image_processor = copy.deepcopy(processor.image_processor)
    image_processor.max_image_pixels = 40 * 40 - 1
    path = tmp_path / "large.png"
    Image.new("RGB", (40, 40), "red").save(path)
    decoded = []
    original_load = ImageFile.ImageFile.load

    def recording_load(image):
        decoded.append(image.size)
        return original_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    with ImageReader(image_processor, threads=1) as reader:
        with pytest.raises(ValueError, match="1600 pixels, more than the limit of 1599"):
            reader.read([path])[0].result()
    assert decoded == []

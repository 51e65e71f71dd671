"""Device and dtype resolution: a device this machine lacks is refused by name, before any weight moves."""

import pytest
import torch

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.settings import resolve_device


def test_devices_this_machine_has_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(("device", "message"), [("cuda:99", "cuda device"), ("gpu", "is not a device")])
def test_a_device_this_machine_lacks_is_refused_by_name(tiny, tmp_path, device, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(device)
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=message):
        VQAScore.from_pretrained(tmp_path, device=device)

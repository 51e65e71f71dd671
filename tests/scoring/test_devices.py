"""Device and dtype resolution: a device this machine lacks is refused by name, before any weight moves; the device
an offloaded module computes on; the batch size."""

import pytest
import torch
from accelerate.hooks import AlignDevicesHook, SequentialHook

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.devices import execution_device, resolve_device
from transformers_clipflant5.scoring.plan import check_batch_size


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


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "4", True, None])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        check_batch_size(batch_size)
    check_batch_size(1)


def test_an_offloaded_module_computes_on_its_hooks_execution_device():
    """Offloaded weights wait on the meta device; accelerate's hook (alone, or inside a SequentialHook when
    several are attached) names the device they are moved to for the forward pass."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, device="meta"))
    module = model[0]
    assert execution_device(torch.nn.Linear(2, 2), model) == torch.device("cpu")
    module._hf_hook = AlignDevicesHook(execution_device="cuda:1")
    assert execution_device(module, model) == torch.device("cuda:1")
    module._hf_hook = SequentialHook(AlignDevicesHook(), AlignDevicesHook(execution_device="cuda:1"))
    assert execution_device(module, model) == torch.device("cuda:1")
    # Without a hook naming it: the first device of the model's device map that is not CPU RAM or disk.
    module._hf_hook = None
    model.hf_device_map = {"0": "disk", "1": "cuda:2"}
    assert execution_device(module, model) == torch.device("cuda:2")

"""The numpy-only unpickler: Flow-GRPO's bodies load (numpy arrays of prompts, every protocol that writes bytes as
bytes), and a pickle naming any other global is refused, naming it, without importing or calling it."""

import builtins
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.support.servers import server_env
from transformers_clipflant5.serving.safe_pickle import RefusedGlobal, safe_loads


PROMPTS = ["a red cube", "two cats on a sofa", "ünïcödé"]


@pytest.mark.parametrize("protocol", range(3, pickle.HIGHEST_PROTOCOL + 1))
def test_flow_grpo_bodies_load(protocol):
    body = {
        "images": [b"\xff\xd8jpeg", b"\x89PNG"],
        "prompts": np.array_split(np.array(PROMPTS), 1)[0],
        "objects": np.array(PROMPTS, dtype=object),
        "numbers": [np.float32(0.5), np.int64(3), np.arange(6, dtype=np.float16).reshape(2, 3)],
        "nested": {"list": [1, 2.5, None, True], "tuple": (1, "a")},
    }
    loaded = safe_loads(pickle.dumps(body, protocol=protocol))
    assert loaded["images"] == body["images"]
    assert loaded["prompts"].tolist() == PROMPTS and loaded["objects"].tolist() == PROMPTS
    assert loaded["numbers"][0] == np.float32(0.5) and loaded["numbers"][1] == 3
    assert np.array_equal(loaded["numbers"][2], body["numbers"][2])
    assert loaded["nested"] == body["nested"]


class _Calls:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


@pytest.mark.parametrize(
    "payload, name",
    [
        (_Calls(builtins.eval, "1 + 1"), "builtins.eval"),
        (_Calls(getattr, "text", "upper"), "builtins.getattr"),
        (_Calls(open, "/etc/hostname"), "io.open"),
        (_Calls(np.load, "x.npy"), "numpy.load"),
        (_Calls(subprocess.run, ["true"]), "subprocess.run"),
    ],
)
def test_other_globals_are_refused_by_name(payload, name):
    with pytest.raises(RefusedGlobal, match=name.replace(".", r"\.")) as refused:
        safe_loads(pickle.dumps({"prompts": payload}))
    assert refused.value.global_name == name


def test_protocol_2_bytes_are_refused_with_a_hint():
    with pytest.raises(RefusedGlobal, match="protocol 3 or later"):
        safe_loads(pickle.dumps({"images": [b"jpeg"]}, protocol=2))


def test_a_refused_module_is_never_imported():
    # A module nothing has imported: refusing it must not import it (importing runs its code).
    code = (
        "import pickle, sys\n"
        "from transformers_clipflant5.serving.safe_pickle import RefusedGlobal, safe_loads\n"
        "data = b'ctabnanny\\ncheck\\n.'  # the GLOBAL opcode\n"
        "try:\n    safe_loads(data)\nexcept RefusedGlobal as error:\n    print(error.global_name)\n"
        "print('tabnanny' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=server_env(), timeout=600
    )
    assert result.stdout.split() == ["tabnanny.check", "False"], result.stderr[-2000:]


@pytest.mark.parametrize("data", [b"", b"not a pickle", pickle.dumps([1, 2, 3])[:-3], b"\x80\x05\x95"])
def test_malformed_pickles_raise_unpickling_errors(data):
    with pytest.raises(pickle.UnpicklingError, match="not a readable pickle"):
        safe_loads(data)

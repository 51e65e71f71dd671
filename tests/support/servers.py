"""Running `clip-flant5 serve` as a real server process on a free localhost port, and encoding images for it."""

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

import transformers_clipflant5
from tests.support.paths import REPO_ROOT


# Seconds; these only turn a hung server into a failure, far above a start or an answer on a loaded machine.
HANG_LIMIT = 600
SOURCE_ROOT = Path(transformers_clipflant5.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(model: Path, port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "transformers_clipflant5", "serve", "--model", str(model), "--port", str(port),
            "--devices", "cpu", *options]  # fmt: skip


def server_env() -> dict[str, str]:
    """This checkout's code first on the path, offline, one thread per process (the tests share the CPUs)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT), str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


class ServerProcess:
    """`clip-flant5 serve --model MODEL OPTIONS` on a free port, its output in `log`."""

    def __init__(self, model: Path, log: Path, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(
                serve_command(model, self.port, *options), stdout=handle, stderr=subprocess.STDOUT, env=server_env()
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, headers: dict | None = None) -> dict:
        """Poll /health until it answers 200; fail (with the server's output) if the process ends or hangs."""
        deadline = time.monotonic() + HANG_LIMIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.output()[-4000:]}")
            try:
                response = httpx.get(self.url + "/health", headers=headers, timeout=10)
                if response.status_code == 200:
                    return response.json()
                assert response.status_code == 503, response.text
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the server was not ready within {HANG_LIMIT} s:\n{self.output()[-4000:]}")

    def terminate(self) -> int:
        """SIGTERM, and the exit status (the process is killed if it hangs)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=HANG_LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not stop within {HANG_LIMIT} s of SIGTERM") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def base64_png(image: Image.Image) -> str:
    return base64.b64encode(encoded(image)).decode("ascii")


def decoded(data: bytes) -> Image.Image:
    """What the server makes of encoded bytes: the decoded image in RGB."""
    return Image.open(io.BytesIO(data)).convert("RGB")

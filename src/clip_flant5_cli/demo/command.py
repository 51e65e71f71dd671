"""`clip-flant5 demo`: load the model and serve the web demo (`transformers_clipflant5.demo`). The options and the
help are in `clip_flant5_cli.demo`."""

import argparse
import os
import socket
import sys


DEMO_EXTRA_INSTALL = 'pip install -e ".[demo]"'


def run(args: argparse.Namespace) -> int:
    from transformers_clipflant5.hub.model_source import (
        LOAD_ERRORS,
        ModelSourceError,
        check_model_source,
        explain_load_error,
    )

    try:
        from transformers_clipflant5.demo.app import KEY_VARIABLE, is_loopback, launch_demo
    except ImportError as error:
        return _error(f"the demo needs gradio ({error}): {DEMO_EXTRA_INSTALL}")
    if not 0 < args.port < 65536:
        return _error(f"--port must be between 1 and 65535, got {args.port}.")
    key = os.environ.get(KEY_VARIABLE) or None
    if not is_loopback(args.host) and key is None:
        # Checked before the model loads (minutes for XXL).
        return _error(
            f"--host {args.host} makes the demo reachable from other machines: set {KEY_VARIABLE} to a secret key "
            "that visitors must enter, or keep the default 127.0.0.1."
        )
    problem = _port_problem(args.host, args.port)
    if problem is not None:
        # Before the model loads (minutes for XXL), not after.
        return _error(problem)
    from transformers_clipflant5.scoring.vqascore import VQAScore

    try:
        check_model_source(args.model, revision=args.revision)
        kwargs = {"revision": args.revision} if args.revision else {}
        if args.quantization is not None:
            kwargs["quantization"] = args.quantization
        scorer = VQAScore.from_pretrained(args.model, dtype=args.dtype, device=args.device, **kwargs)
    except ModelSourceError as error:
        return _error(str(error))
    except LOAD_ERRORS as error:
        return _error(explain_load_error(args.model, error))
    try:
        launch_demo(scorer, host=args.host, port=args.port, key=key)
    except OSError as error:
        # Gradio reports a port in use as an OSError naming it.
        return _error(f"could not serve on {args.host}:{args.port}: {error}")
    except KeyboardInterrupt:
        pass
    return 0


def _port_problem(host: str, port: int) -> str | None:
    """Why the demo could not listen on `host:port` (in use, no such address), or None."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        return f"cannot serve on {host}:{port} ({error.strerror or error}): pick another --port or --host."
    return None


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2

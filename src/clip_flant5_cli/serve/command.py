"""`clip-flant5 serve`: the VQAScore reward server (options and help in `clip_flant5_cli.serve`; the server in
`transformers_clipflant5.serving`)."""

import argparse
import functools
import logging
import sys


def run(args: argparse.Namespace) -> int:
    from . import SERVE_EXTRA_INSTALL

    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        return _usage_error(f"the server needs {error.name}: {SERVE_EXTRA_INSTALL}")
    from transformers_clipflant5.hub.model_source import ModelSourceError, check_model_source
    from transformers_clipflant5.serving.app import ServerConfig, bind_socket, run_server
    from transformers_clipflant5.serving.replicas import load_replicas, parse_devices
    from transformers_clipflant5.serving.security import ExposureError, check_exposure

    from ..score.checks import ScoreUsageError, load_processor, load_scorer

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for option, value, low in (("--max-batch-size", args.max_batch_size, 1), ("--max-items", args.max_items, 1)):
        if value < low:
            return _usage_error(f"{option} must be at least {low}, got {value}.")
    for option, value in (("--max-wait-ms", args.max_wait_ms), ("--max-body-mb", args.max_body_mb)):
        if value < 0:
            return _usage_error(f"{option} must not be negative, got {value}.")
    if args.body_timeout <= 0:
        return _usage_error(f"--body-timeout must be positive, got {args.body_timeout}.")
    try:
        # Refused before anything loads: a server exposed without a key, an unusable key file, a missing device.
        api_key = check_exposure(args.host, args.api_key_file, args.no_auth)
        devices = parse_devices(args.devices)
        check_model_source(args.model, revision=args.revision)
        load_processor(args)  # quick: an unusable folder or template is reported before the weights load
    except ExposureError as error:
        return _usage_error(str(error))
    except ValueError as error:
        return _usage_error(f"--devices: {error}")
    except (ScoreUsageError, ModelSourceError) as error:
        return _usage_error(str(error))
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as error:
        return _usage_error(
            f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); pick another --port."
        )
    # load_scorer reads the options `score` has; the server's batches are at most --max-batch-size pairs.
    options = argparse.Namespace(**vars(args), batch_size=args.max_batch_size, offload_folder=None)
    config = ServerConfig(
        model_name=args.model,
        max_batch_size=args.max_batch_size,
        max_wait=args.max_wait_ms / 1000,
        max_items=args.max_items,
        video_frames=args.video_frames,
        max_body_bytes=int(args.max_body_mb * 2**20),
        body_timeout=args.body_timeout,
        api_key=api_key,
    )
    load = functools.partial(load_replicas, functools.partial(_load_scorer, load_scorer, options), devices)
    print(f"serving {args.model} on http://{args.host}:{args.port} (loading on {', '.join(devices)})", file=sys.stderr)
    return run_server(load, config, sock, log_level=args.log_level)


def _load_scorer(load_scorer, options: argparse.Namespace, device: str):
    return load_scorer(options, device=device)


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2

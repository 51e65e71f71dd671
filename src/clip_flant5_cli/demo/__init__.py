"""`clip-flant5 demo`: a web page (Gradio) to score, explain and rank with a model, in the browser.

Tabs: Score (an image and a text: the score, the words coloured by how much each raises or lowers it, a heatmap of
the image regions that do, the answer's token probabilities), Rank (several images, one prompt: best first) and
Compare texts (one image, several texts). Each is also an API endpoint (/score, /rank, /compare) that
`gradio_client` can call; the page's "Use via API" link shows how.

The model loads once, before the server starts; requests are queued and run one at a time. The page is served on
127.0.0.1 (this machine only) unless --host says otherwise; any other host needs a key, read from the environment
variable CLIP_FLANT5_DEMO_KEY, that visitors type as the password (any user name). Needs the demo extra:
pip install -e ".[demo]".
"""

import argparse

from clip_flant5_choices import QUANT_EXTRA_INSTALL, QUANTIZATION_CHOICES


HELP = "web demo (Gradio): score, explain and rank images in the browser"
EPILOG = """\
examples:
  clip-flant5 demo --model zhiqiulin/clip-flant5-xxl
  CLIP_FLANT5_DEMO_KEY=... clip-flant5 demo --model zhiqiulin/clip-flant5-xl --host 0.0.0.0 --port 8080

exit status:
  0  the server was stopped (Ctrl-C)
  2  nothing was served: a bad command line, gradio missing, a --model that cannot be loaded, a port in use, or a
     non-loopback --host without CLIP_FLANT5_DEMO_KEY"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Hub repo or folder, original layout or ours")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, ...")
    parser.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: CUDA if available)")
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATION_CHOICES,
        help="quantize the T5 weights as they load: int8 (torchao) or int4 (bitsandbytes NF4); needs "
        + QUANT_EXTRA_INSTALL,
    )
    parser.add_argument("--revision", help="Hub revision of --model")

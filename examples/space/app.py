"""The VQAScore web demo as a Hugging Face Space (Gradio SDK): see docs/demo.md.

The Space runs `python app.py`. Settings, as Space variables or secrets:
  CLIP_FLANT5_MODEL     the model (default zhiqiulin/clip-flant5-xxl; zhiqiulin/clip-flant5-xl fits smaller GPUs)
  CLIP_FLANT5_DEMO_KEY  optional (a secret): visitors must then enter it as the password
The Space platform sets GRADIO_SERVER_NAME=0.0.0.0 and serves the page through its own proxy.
"""

import os

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.demo.app import KEY_VARIABLE, build_demo, launch_settings


MODEL = os.environ.get("CLIP_FLANT5_MODEL", "zhiqiulin/clip-flant5-xxl")

scorer = VQAScore.from_pretrained(MODEL)
demo = build_demo(scorer, title=f"VQAScore ({MODEL})")

if __name__ == "__main__":
    demo.launch(**launch_settings(os.environ.get(KEY_VARIABLE) or None))

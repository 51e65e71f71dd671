# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The web demo (`clip-flant5 demo`, and the Hugging Face Space in `examples/space/`): needs the `demo` extra
(`pip install -e ".[demo]"`, Gradio). See `app` for the tabs and their API endpoints."""

import os


# Gradio reports usage to its makers unless told not to, at import; a scoring demo has no reason to.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Talking to the Hugging Face Hub: the arguments that reach it, publishing folders, model cards."""

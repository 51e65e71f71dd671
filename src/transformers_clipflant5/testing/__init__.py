# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Fixtures built in code for tests, the demo and benchmarks: tiny models and tokenizers (`tiny`), the synthetic
coloured-shapes data (`synthetic`) and the training demo (`demo`). Nothing of the runtime library imports this."""

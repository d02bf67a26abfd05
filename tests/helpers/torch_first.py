"""Import torch, torchvision and triton (when installed) before tensorflow.

With tensorflow loaded first, loading triton's extension later in the same process crashed it
(segmentation fault in ``triton/knobs.py``, reached through ``import torchvision``; seen with
tensorflow-cpu 2.21, torch 2.14.1): ``import torch, tensorflow, triton.runtime`` crashes, ``import torch,
triton.runtime, tensorflow`` does not. Test modules that import tensorflow import this first, so a test run
does not depend on which module pytest collects first.
"""

from __future__ import annotations

import importlib
import importlib.util

for _name in ("torch", "torchvision", "triton.runtime"):
    if importlib.util.find_spec(_name.split(".")[0]) is not None:
        importlib.import_module(_name)

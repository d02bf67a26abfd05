"""Names other packages import from here (``nima_rt/cli/train.py``, ``tests/test_label.py``).

The code lives in ``label_files.py`` (parsing label files), ``label_sets.py`` (finding their
images, splitting by group) and ``image_data.py`` (the torch dataset).
"""

from __future__ import annotations

from .label_files import LabelError
from .label_sets import load_label_set, split_by_group

__all__ = ["LabelError", "load_label_set", "split_by_group"]

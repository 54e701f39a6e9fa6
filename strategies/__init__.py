"""Fine-tuning strategies, one family per module; importing this package registers them all.

Adding a strategy: create `strategies/my_strategy.py` with a `Strategy` subclass decorated by
`@register_strategy("my_strategy")`. Nothing else to edit: every module here is imported below.
"""

import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")

"""Pinned reproductions of published results, above ``bench``: each module here declares its reproductions with
``bench.reproduce``'s dataclasses and registers them on import, with any analysis its pages print (an ``explain``
hook). ``wmbench reproduce`` imports this package, then lists them or runs one with
:func:`bench.reproduce.run_reproduction`.
"""

from reproductions import mea_defender  # noqa: F401  (registers mea-defender-fmnist and mea-defender-ablation)

"""samlib: the library behind the book "Why is SAM robust to label noise?".

Modules are named after concepts: :mod:`samlib.methods` (the update rules),
:mod:`samlib.theory` (the closed forms the book derives), :mod:`samlib.data`,
:mod:`samlib.models`, :mod:`samlib.train` (the one training loop),
:mod:`samlib.experiments` (configs, scales, the chapters' grids and the results
cache), :mod:`samlib.plots`, :mod:`samlib.notebook` and :mod:`samlib.bench`.
"""

__version__ = "0.1.0"

"""samlib: the library behind the book "Why is SAM robust to label noise?".

Modules are named after concepts: :mod:`samlib.data`, :mod:`samlib.models`,
:mod:`samlib.methods` (the update rules), :mod:`samlib.train` (the one training
loop), :mod:`samlib.experiments` (configs, scales and the results cache) and
:mod:`samlib.plots`.
"""

__version__ = "0.1.0"

"""einsynth: Extended-Einsum cascades, ILP mapping, cycle-level simulation and RTL generation.

The toolkit lives in the top-level packages ``dataflow``, ``hw``, ``mapper``, ``sim`` and
``explore`` (see docs/ARCHITECTURE.md); this package only carries the version.
"""
__version__ = "0.1.0"

"""Built-in cascades (``cascades/*.yaml``) and model shapes (:mod:`dataflow.library.models`)."""

"""The ground floor of wmbench: the component API, configuration, data, models, training, the cache, the runner,
the scorer and the result cards. The public Python API is the ``wmbench`` package."""

__version__ = "0.1.0"

__all__ = ["__version__"]

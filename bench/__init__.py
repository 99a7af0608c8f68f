"""wmbench: a benchmark of DNN ownership watermarks against extraction, removal and detection attacks."""

__version__ = "0.1.0"


def load_results(path):
    """Load and validate every result card under ``path`` into a pandas DataFrame."""
    from bench.results import load_results as _load

    return _load(path)


__all__ = ["__version__", "load_results"]

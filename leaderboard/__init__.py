"""The leaderboard: a build product rendered from the result cards (``render(results_dir, out_dir)``)."""

from leaderboard.render import render

__all__ = ["render"]

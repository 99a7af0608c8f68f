"""Detection attacks: they return a verdict (flagged, suspected target class, source pair, score)."""

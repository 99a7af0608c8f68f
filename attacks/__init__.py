"""Attacks on watermarks: extraction/, removal/, detection/ and the control attacks here."""

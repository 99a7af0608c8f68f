"""Extraction attacks: they see only the black-box oracle and the attacker's data."""

"""Removal attacks: a white-box copy of the model plus the attacker's data; they return a suspect model."""

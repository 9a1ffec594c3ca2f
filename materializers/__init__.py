"""Materializers ZenML does not already ship (none needed yet: folders travel as Path)."""

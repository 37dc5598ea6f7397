"""Sinks read the journal in order from their own cursor; one implementation per file."""

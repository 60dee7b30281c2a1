"""Measured replay tables and what they are for: answering a search without an engine, measuring a table, and
comparing search strategies on them."""

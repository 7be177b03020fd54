"""Experiments that test the lecture notes' claims: ``python -m experiments NAME [--quick]``."""

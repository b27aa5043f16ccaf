"""Measuring tools run inside lab hosts (`python -m experiments.tools.X` or by file path); stdlib only."""

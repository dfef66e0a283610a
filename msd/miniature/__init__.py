"""Generators of miniature datasets in the real file formats, and the demo that runs every stage on them.

Used by the tests, the benchmarks and the demo; never by the stages themselves.
"""

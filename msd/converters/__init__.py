"""Dataset converters: other datasets (MagnaTagATune, FMA, ...) into the cleaning stage's outputs.

Each writes a master CSV, a clean tag database in the Last.fm schema and a split file, so that
preprocessing, training and evaluation work unchanged.
"""

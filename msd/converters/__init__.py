"""Dataset converters: other datasets into the cleaning stage's outputs.

mtt (MagnaTagATune), fma (Free Music Archive), jamendo (MTG-Jamendo) and labels (your own labelled audio:
a labels.csv or one folder per tag). Each writes a master CSV, a clean tag database in the Last.fm
schema, a split file and a report of the tracks left out (the shared contract and helpers are in
`common`), so that preprocessing, training and evaluation work unchanged.
"""

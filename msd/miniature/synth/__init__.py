"""The synthesiser of the miniature datasets, one module per seam; `msd.miniature.music_synth` is its
front door (import from there) and documents what each tag sounds like."""

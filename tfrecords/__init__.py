"""The preprocessing stage: `ultimate.csv` + `clean_lastfm.db` + audio -> sharded TFRecords + `dataset.json`."""

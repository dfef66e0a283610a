"""The MSD cleaning stage: audio tree + MSD summary + Last.fm tags -> `ultimate.csv` + `clean_lastfm.db`.

Commands, in order: `fetcher` (scan the audio tree), `wrangle` (join with the MSD summary, drop
mismatched, duplicate, faulty and untagged tracks), `silence` (drop too-silent or too-short tracks),
`lastfm_cleaning` (build the clean tag vocabulary). `synthetic` writes a miniature MSD in the real
formats for tests and the demo.
"""

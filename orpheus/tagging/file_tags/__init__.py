"""Tags written into users' audio files, changing only the fields named (`writer`): ID3v2 (`id3v2`), RIFF/WAVE
INFO (`riff_wave`) and the in-place rewrite that keeps owner, mode, links and the other bytes (`rewrite`)."""

"""The generation core shared by every family: the decode loop and its events, sampling, stopping, presets, outputs."""

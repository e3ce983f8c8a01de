"""Loading weights: the Hub cache and downloads, checkpoint files, from_pretrained for every family."""

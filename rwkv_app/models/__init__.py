"""Model families: one folder each (config, modeling, checkpoint loading, state layout)."""

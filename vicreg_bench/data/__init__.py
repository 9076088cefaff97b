"""Dataset readers in the official layouts, protocol transforms, preflight checks and the synthetic suite."""

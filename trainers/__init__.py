"""Pretraining code for the backbones vicreg-bench evaluates."""

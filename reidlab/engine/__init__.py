"""Trainer, checkpoints and distributed helpers."""

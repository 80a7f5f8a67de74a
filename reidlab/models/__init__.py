"""Backbones, embedding heads, MGN and the TransReID-style ViT, built through one registry."""

"""Datasets (real layouts and the generated SynthReID), transforms, samplers and loaders."""

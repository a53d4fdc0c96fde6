"""Datasets, loaders and the synthetic street-scene generator."""

"""Datasets, loaders, transforms and samplers; the synthetic street scenes come from `streetgen`."""

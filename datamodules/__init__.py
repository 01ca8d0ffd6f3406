"""LightningDataModules: each knows its input shape, number of classes and class names."""

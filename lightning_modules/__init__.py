"""LightningModules and the networks they train (nets/)."""

"""Running experiments: config checks, building objects from config, run directories, sweeps, rebuilding from a checkpoint."""

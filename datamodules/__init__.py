"""LightningDataModules, one file per data family; ``configs/data/<name>.yaml`` registers each."""

"""LightningModules, one file per model; plain nn.Modules and routing maths live in ``components/``."""

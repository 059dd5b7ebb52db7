"""Plain nn.Modules and pure tensor functions used by the LightningModules."""

"""One module per claim of CLAIMS.md; each registers its Experiment subclass with @register."""

"""One module per claim of docs/claims.md; each registers its Experiment subclass with @register."""

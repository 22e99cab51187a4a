"""Example QARM-Bench plugins (docs/extending.md): a ranker, a variant and a dataset."""

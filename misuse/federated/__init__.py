"""Federated learning across sites: models whose parameters average, aggregation rules, update
clipping and noise, and the Flower apps (in :mod:`misuse.federated.flower`, which needs ``flwr``)."""

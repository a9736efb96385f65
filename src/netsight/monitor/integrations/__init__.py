"""Trainer integrations: thin adapters that drive :func:`netsight.watch` from a trainer's callbacks.

- :mod:`.lightning`: ``NetsightCallback`` for PyTorch Lightning (``pip install netsight[lightning]``)
- :mod:`.hf`: ``NetsightTrainerCallback`` for Hugging Face ``Trainer`` (``pip install netsight[hf]``)

Each is imported on its own, so importing one never imports the other trainer.
"""

"""Adaptive response: replays of labelled streams, a response environment, learned policies, actions.

The environment needs ``gymnasium`` (the ``rl`` extra); import :mod:`misuse.response.env` and
:mod:`misuse.response.policy` directly.
"""

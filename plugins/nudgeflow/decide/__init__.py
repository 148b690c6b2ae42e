"""Decide: the method's math as pure functions over numpy arrays and polars frames, no I/O.

``priors`` (empirical-Bayes Beta priors and posteriors), ``sampling`` (Thompson sampling),
``action_space`` (the action sets of a run), ``eligibility`` (the guardrails) and
``matching`` (hour, send-or-wait, message, propensity).
"""

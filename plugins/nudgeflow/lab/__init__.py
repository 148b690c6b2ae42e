"""The lab: nudgeflow's simulator, demo and evaluations, beside the product.

It imports the product (``nudgeflow.config``, ``nudgeflow.decide``, ``nudgeflow.steps``); the
product never imports it (tests/unit/test_layout.py). ``simulate`` / ``world``: the simulated
app; ``demo``: the closed loop through Airflow; ``evaluate_measurement``: estimated vs true
send effects; ``harness``: policies in closed loop; ``truth`` and ``cli``: its report lines
and commands, plugged into `nudgeflow` by ``plugin``.
"""

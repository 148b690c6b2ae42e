"""Policy evaluation harness (issue 4): closed-loop simulated worlds in memory, the dbt reward in numpy, peers, ablations, report."""

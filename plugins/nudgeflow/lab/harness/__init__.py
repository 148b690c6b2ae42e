"""Policy evaluation harness: closed-loop simulated worlds in memory, the dbt reward in numpy,
peers, ablations, report."""

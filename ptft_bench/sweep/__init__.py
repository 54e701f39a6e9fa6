"""Sweep: a suite's runs planned, priced, scheduled and executed, then the report.

Owns the plan (`plan`: suite -> run specs, shards, pending runs, the dry run), the estimate
(`estimate`: wall time before a sweep starts, calibrated on this machine), the loop (`loop`:
validate inputs, run the pending specs here or in workers, write the report) and the workers
(`workers`: fresh processes, N at a time, each run claimed atomically).
"""

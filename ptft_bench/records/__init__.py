"""Records: what a run leaves behind, and where it is kept.

Owns the one definition of a run record (`record.RunRecord`; `docs/CONTRACTS.md` is generated
from it with `python -m ptft_bench.records.record`) and the store (`store.RunStore`: one record
and one predictions file per run, written atomically, claims for concurrent workers).
"""

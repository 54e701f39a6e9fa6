"""Cost: what a run costs, measured or counted the same way for every strategy.

Owns the meters (`meters`: parameters, peak memory, checkpoint size, the device's peak FLOP/s),
the FLOP count (`flops`, with the per-layer matmul units in `flops_units`; refereed by torch's
`FlopCounterMode` in the tests) and inference cost (`inference`: latency and throughput).
"""

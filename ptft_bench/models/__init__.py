"""Models: resolving a model spec and finding its structure.

Owns loading (`load`: aliases, local folders, hub ids, the task head), GGUF conversion (`gguf`),
the structural parts every strategy, cache and FLOP count shares (`parts`: embeddings, blocks,
head; one layer numbering), the roles of a block's Linear layers (`projections`), what vector
the head reads (`pooling`) and the frozen features closed-form strategies fit on (`features`).
"""

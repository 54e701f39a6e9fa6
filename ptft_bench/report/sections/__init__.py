"""The report's sections, built from the leaderboard and the evidence into the document model.

One module per top-level section, in reading order: `answer`, `setup`, `leaderboards` (per
task), `across_tasks` (with the model comparison), `figures`, `did_not_learn`, `failures`,
`cost`; `common` holds the helpers several of them share. Titles are unnumbered and each
section has a key; `write.build_document` orders them and `Document.numbered` numbers them and
resolves the ``{§key}`` references between them.
"""

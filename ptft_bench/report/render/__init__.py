"""Rendering: one document model (`document`) written as markdown (`markdown`) and
self-contained HTML (`html`), number formatting (`fmt`), and the figures (`plotting`,
`figures`, `figures_stats`).
"""

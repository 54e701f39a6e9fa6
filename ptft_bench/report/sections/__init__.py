"""The report's sections, built from the leaderboard and the evidence into the document model."""

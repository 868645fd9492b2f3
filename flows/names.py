"""Names shared by the flows and their deployments (kept apart so neither imports the other)."""

RETRAIN_DEPLOYMENT = "retrain/weekly"
SCORE_DEPLOYMENT = "score/daily"

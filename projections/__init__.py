"""Views that follow the agent log (coming with the projections issue)."""

"""experiment family (package face kept import-free for start-up time)."""

"""Virtual keys: per-key model access, rate limits, budgets, pricing and spend."""

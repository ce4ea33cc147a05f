"""State shared by every worker and instance through Redis (``[cluster] redis_url``)."""

"""Who may call the gateway: API keys and JWTs turned into principals, checked at the edge."""

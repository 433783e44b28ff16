"""The gateway: render.v1.RenderService, the Redis job ledger and the dispatcher that runs jobs."""

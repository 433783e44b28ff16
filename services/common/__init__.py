"""What every stage service shares: settings, the server lifecycle and conversions."""

"""Who is logging in: login attempts from every auth source and stateful per-account/per-source login models."""

"""HTTP: handlers, middleware and authentication."""

"""HTTP prediction service: the app factory is ``service.app.create_app`` (see docs/service.md)."""

"""The web layer: Flask only. Blueprints call the service layer through :func:`plugin.web.context.current_services`."""

"""The real-time recommendation API (FastAPI): `create_app(settings)`; run it with `recstack serve`."""

"""The routes of `clamp serve`, one module per resource; each has `register(app, ctx)`."""

"""The HR dashboard (`/dashboard`): `handlers.dashboard.web.install(app, Dashboard(...))`, called by
bot/dashboard.py. Modules: deps (what the shell hands in), session (cookie, CSRF, headers), overview and
timeline (reads), pages (HTML), web (routes)."""

"""Settings: read from the environment once, at the top (the CLI, the app factory), and handed down.

The lowest layer beside the domain: nothing of ours is imported here, so every layer may take a
`Settings` as an argument without importing upward.
"""

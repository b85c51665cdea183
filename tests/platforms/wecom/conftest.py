from tests.chat.conftest import chat  # noqa: F401  (the chat harness over the real pipeline)

from tests.chat.conftest import chat  # noqa: F401  (the chat harness over the real pipeline)
from tests.platforms.wecom.harness import wcase  # noqa: F401  (the pipeline over a fake WeCom)

"""WeCom (企业微信) self-built app: the pieces a connector composes.

- `xmlsafe`: hardened XML parsing (no DTD, no entities) into flat dicts with forced lists.
- `callback`: the encrypted callback: signature, replay window, decryption (wechatpy's
  `WeChatCrypto`), typed events, and an aiohttp handler that answers only after `dispatch` returned.
- `api`: our own aiohttp client for the REST API (token cache, retries, error classes).
- `quota`: the per-member message quota WeCom enforces by dropping messages silently.
- `cardjson`: the platform-neutral card as a `template_card`.

Protocol details and their sources: `../shared/research/wecom.md`.
"""

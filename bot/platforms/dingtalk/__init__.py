"""DingTalk building blocks a connector composes: the OpenAPI client (`api`), its rate limiter
(`ratelimit`), the Stream inbound client on the real `dingtalk-stream` SDK (`stream`) and the card
variable mapping (`cardvars`). Nothing here is wired into the app yet (issue 10 defines the
connector contract); see README.md in this folder."""

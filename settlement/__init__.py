"""Settlement amounts under PRC law: pure functions on Decimal, every result explained line by line.

Modules: ``tables`` (city rate tables as data), ``social_insurance`` (back-payment),
``compensation`` (N / N+1 / 2N), ``annual_leave`` (unused-leave payout), ``final_pay``
(final-month proration), ``json_api`` (the JSON contract shared by the CLI and in-process callers).
"""

"""The `smsgate` command line, dev mode and the HTTP client: the layer above the services.

This is the one package allowed to import every service (`smsgate_api`, `smsgate_agent`,
`smsgate_callback`, `smsgate_sim`); the core `smsgate` package imports none of them.
"""

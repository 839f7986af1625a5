"""The live service: REST API, streaming worker (MQTT, HTTP batches, Zeek tailing), dashboard.

Only this package and the CLI read configuration, the environment or the network. See
``docs/service.md`` for the topic layout, the API and the security model.
"""

"""Device ingestion, IoT-agent style: provisioned devices publish measurements over MQTT or HTTP,
each becomes an NGSI-LD update of the device's entity (see docs/device-ingestion.md)."""

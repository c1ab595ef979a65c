"""What an admin watches: Prometheus ``metrics``, ``alerts`` (webhooks when a key is disabled,
a budget runs low, errors climb) and OpenTelemetry ``tracing`` of each request.
"""

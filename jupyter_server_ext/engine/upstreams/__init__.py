"""The upstream keys and their rotation: which key of which provider answers a request.

``specs`` validates what an admin configures (``c.RSQLProxy.upstreams``: provider kinds, keys,
accounts, limits, prices, public model names). ``pool`` chooses a key with headroom, spreads load
and tracks each key's health (breakers, disabled keys, a self-hosted server's in-flight cap);
``buckets`` are the moving windows of one (account, model) that the pool fills and the provider's
headers clamp. ``failover`` sends an admitted request, moving to another key on a 429, a 5xx or
a timeout within the request's deadline, and to the fallback model when none can answer.
``transport`` carries a request to one upstream (HTTP through each provider kind's dialect in
``providers``, or the local model's process); ``selfhosted`` probes self-hosted servers.
"""

"""The admin dashboard: a server-rendered page at ``{prefix}admin/`` kept live by Server-Sent
Events from ``{prefix}admin/events``; no JavaScript build step, the chart library is vendored
in ``static/vendor/`` (hubs are often offline)."""

"""Alert claims and recent alerts shared through Redis (``alert_ledger``)."""

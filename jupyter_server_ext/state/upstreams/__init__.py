"""The upstream pool with its capacity shared through Redis (``shared_pool``): every replica
counts the same provider windows, cooldowns, breakers, disabled keys and in-flight caps."""

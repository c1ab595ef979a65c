"""The SQL tests' shop database (customers and their orders) and a right answer about it."""

from __future__ import annotations

SHOP = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                     amount NUMERIC(10, 2));
INSERT INTO customers VALUES (1, 'Ada', 'north'), (2, 'Bob', 'south'), (3, 'Cy', 'north');
INSERT INTO orders VALUES (1, 1, 10.5), (2, 1, 20), (3, 2, 7.25), (4, 3, 100);
"""

# the model's right answer to "total per region", as a fenced SQL block
GOOD = (
    "```sql\nSELECT c.region, SUM(o.amount) AS total\nFROM orders o JOIN customers c "
    "ON c.id = o.customer_id\nGROUP BY c.region\nORDER BY c.region\n```"
)

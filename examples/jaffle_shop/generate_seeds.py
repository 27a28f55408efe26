"""Regenerate the example seeds: deterministic, small, jaffle-shop-like data.

Run `python generate_seeds.py` from this directory; the CSVs are committed so nobody needs to.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

FIRST = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lia"]
LAST = ["Abe", "Bose", "Cruz", "Diaz", "Egan", "Fox", "Gill", "Hale", "Ito", "Jha", "Kerr", "Lund"]
STATUSES = ["placed", "shipped", "completed", "completed", "completed", "return_pending", "returned"]
METHODS = ["credit_card", "coupon", "bank_transfer", "gift_card"]
STORES = [(1, "Philadelphia", "2024-09-01"), (2, "Brooklyn", "2025-02-15"), (3, "Chicago", "2025-06-01")]


def main() -> None:
    rng = random.Random(20260101)
    here = Path(__file__).parent / "seeds"
    with open(here / "raw_customers.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "first_name", "last_name"])
        for cid in range(1, 101):
            out.writerow([cid, rng.choice(FIRST), rng.choice(LAST)])
    with open(here / "raw_stores.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "name", "opened_at"])
        out.writerows(STORES)
    orders, payments = [], []
    start = date(2025, 1, 1)
    for oid in range(1, 301):
        day = start + timedelta(days=rng.randrange(0, 365))
        orders.append([oid, rng.randrange(1, 101), rng.choice(STORES)[0], day.isoformat(), rng.choice(STATUSES)])
        for _ in range(rng.choice([1, 1, 1, 2])):
            payments.append([len(payments) + 1, oid, rng.choice(METHODS), rng.randrange(100, 5000)])
    with open(here / "raw_orders.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "user_id", "store_id", "order_date", "status"])
        out.writerows(orders)
    with open(here / "raw_payments.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "order_id", "payment_method", "amount"])
        out.writerows(payments)


if __name__ == "__main__":
    main()

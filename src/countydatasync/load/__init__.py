"""Load: the three staging databases (geo, working, stats) and the one transaction that publishes them."""

"""Transactions and labels as they travel: ``contract`` (types, rules, codec, partitioning, time) and
``fast_decode`` (the vectorized batch decoder the engines use, equal to the contract's reference)."""

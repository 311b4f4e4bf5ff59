"""What differs between two nested records (a store's config identity, its dataset record, a saved
meta-init's NeF), as the words of a one-line error."""


def diff_keys(a, b, prefix="") -> list:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += diff_keys(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} (store) != {b!r} (now)"]

"""The ``driftrec`` command line."""
def main() -> None:
    pass

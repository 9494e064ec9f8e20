"""What a production refuses to do, said in one line the operator can act on."""


class ProductionError(ValueError):
    """A production that cannot be made as asked: a bad prefix, a folder holding something
    else, nothing to produce, a message whose stored bytes are gone."""

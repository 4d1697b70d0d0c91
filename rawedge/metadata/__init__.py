"""Model metadata: the one home of the schema every exported model carries (``schema``)."""

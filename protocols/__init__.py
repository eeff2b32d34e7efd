"""academe.protocols"""

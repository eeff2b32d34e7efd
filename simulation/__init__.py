"""academe.simulation"""

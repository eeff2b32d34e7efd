"""academe.trainers"""

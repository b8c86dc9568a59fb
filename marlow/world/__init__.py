"""Learned world models: dynamics ensembles, opponent models, model envs and branched rollouts."""

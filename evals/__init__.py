"""recagent.evals"""

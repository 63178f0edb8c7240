"""recagent.retrieval"""

"""recagent.agent"""

"""recagent.prompts"""

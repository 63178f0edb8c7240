from recagent.agent.cli import app

app()

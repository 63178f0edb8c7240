from recagent.cli import app

app()

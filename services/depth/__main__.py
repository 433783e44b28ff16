from services.common.stage import StageSettings, run_stage
from services.depth.server import create_server

if __name__ == "__main__":
    settings = StageSettings.from_env("DEPTH", 50062)
    run_stage("depth", lambda: create_server(settings), settings.grace_seconds)

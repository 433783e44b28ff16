from services.common.stage import StageSettings, run_stage
from services.projection.server import create_server

if __name__ == "__main__":
    settings = StageSettings.from_env("PROJECTION", 50063)
    run_stage("projection", lambda: create_server(settings), settings.grace_seconds)
